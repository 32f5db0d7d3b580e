from __future__ import annotations

from pathlib import Path

import pytest

from interleaf import ObjectStore, RunTotals, Seed, ShardRecord, layout
from interleaf.flows.shards import Shard, ShardLedger, iter_shards, shard_cache_key


def seeds(n: int, prefix: str = "s") -> list[Seed]:
    return [Seed(id=f"{prefix}{i}", prompt=f"prompt {i}") for i in range(n)]


def test_shards_are_consecutive_slices_with_a_short_last_one() -> None:
    shards = list(iter_shards(seeds(7), 3))
    assert [s.index for s in shards] == [0, 1, 2]
    assert [[x.id for x in s.seeds] for s in shards] == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]
    assert [s.name for s in shards] == ["shard-00000", "shard-00001", "shard-00002"]


def test_shard_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="shard_size"):
        list(iter_shards(seeds(2), 0))


def test_content_hash_depends_on_seed_content_and_order_only() -> None:
    a = Shard.of(0, seeds(3))
    same_elsewhere = Shard.of(5, seeds(3))
    reordered = Shard.of(0, list(reversed(seeds(3))))
    edited = Shard.of(0, [*seeds(2), Seed(id="s2", prompt="prompt 2 (edited)")])
    assert a.content_hash == same_elsewhere.content_hash
    assert len({a.content_hash, reordered.content_hash, edited.content_hash}) == 3


def test_cache_key_combines_graph_and_content() -> None:
    shard = Shard.of(0, seeds(2))
    assert shard.cache_key("g1") == shard_cache_key("g1", shard.content_hash)
    assert shard.cache_key("g1") != shard.cache_key("g2")
    assert shard.cache_key("g1") != Shard.of(0, seeds(2, prefix="t")).cache_key("g1")


def test_ledger_round_trip_and_done_only_when_done(tmp_path: Path) -> None:
    ledger = ShardLedger(ObjectStore(tmp_path))
    shard = Shard.of(1, seeds(2))
    key = shard.cache_key("g")
    assert ledger.read(key) is None and not ledger.is_done(key)
    record = ShardRecord(key=key, index=1, graph_hash="g", content_hash=shard.content_hash,
                         seed_ids=["s0", "s1"], status="failed",
                         totals=RunTotals(seeds=2, done=1, failed=1, calls=3, failed_reasons={"RuntimeError": 1}),
                         error="x")
    ledger.write(record)
    assert (tmp_path / layout.shard_key(key)).exists()
    assert ledger.read(key) == record and not ledger.is_done(key)
    assert ShardRecord.load(ObjectStore(tmp_path), key) == record
    assert ledger.read(key).totals.failed_reasons == {"RuntimeError": 1}  # type: ignore[union-attr]
    ledger.write(record.model_copy(update={"status": "done", "attempts": 2}))
    assert ledger.is_done(key)
    assert [r.attempts for r in ledger.records()] == [2]
