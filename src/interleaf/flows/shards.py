"""Seed shards: splitting, content-addressed cache keys, and the ledger of finished shards.

A shard's cache key is ``sha256(graph hash, shard content hash)``: the same graph over the
same seeds gives the same key in every flow run, on every machine. Finished shards are
recorded as ``shards/<key>.json`` in the run's own store, so a re-run - through Prefect or
not - skips them by looking there, and deleting the run deletes the markers with it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from interleaf.run.records import ShardRecord
from interleaf.state import Seed
from interleaf.storage.store import ObjectStore


def shard_content_hash(seeds: Sequence[Seed]) -> str:
    """SHA-256 over the seeds' canonical JSON, in order (a shard is an ordered slice)."""
    h = hashlib.sha256()
    for seed in seeds:
        h.update(json.dumps(seed.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def shard_cache_key(graph_hash: str, content_hash: str) -> str:
    """The key a finished shard is recorded under; it ignores run ids and flow-run ids on purpose."""
    return hashlib.sha256(f"{graph_hash}\x00{content_hash}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Shard:
    """An ordered slice of the seeds, numbered from 0 in file order."""

    index: int
    seeds: tuple[Seed, ...]
    content_hash: str

    @classmethod
    def of(cls, index: int, seeds: Sequence[Seed]) -> Shard:
        return cls(index=index, seeds=tuple(seeds), content_hash=shard_content_hash(seeds))

    def cache_key(self, graph_hash: str) -> str:
        return shard_cache_key(graph_hash, self.content_hash)

    @property
    def name(self) -> str:
        """Task-run name shown in the Prefect UI."""
        return f"shard-{self.index:05d}"


def iter_shards(seeds: Iterable[Seed], shard_size: int) -> Iterator[Shard]:
    """Consecutive shards of ``shard_size`` seeds (the last may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    batch: list[Seed] = []
    index = 0
    for seed in seeds:
        batch.append(seed)
        if len(batch) == shard_size:
            yield Shard.of(index, batch)
            batch = []
            index += 1
    if batch:
        yield Shard.of(index, batch)


def shard_at(seeds: Iterable[Seed], index: int, shard_size: int) -> Shard | None:
    """Shard ``index`` of :func:`iter_shards` ``(seeds, shard_size)``, reading no seed past it; None past the end.

    A shard flow run rebuilds its shard from the seeds file with this, so a flow run's
    parameters stay a few numbers however big the shard is.

    >>> from interleaf.state import Seed
    >>> seeds = [Seed(id=f"s{i}", prompt="p") for i in range(5)]
    >>> [s.id for s in shard_at(seeds, 2, 2).seeds], shard_at(seeds, 3, 2)
    (['s4'], None)
    """
    if shard_size < 1 or index < 0:
        raise ValueError(f"need shard_size >= 1 and index >= 0, got {shard_size} and {index}")
    batch = list(itertools.islice(seeds, index * shard_size, (index + 1) * shard_size))
    return Shard.of(index, batch) if batch else None


class ShardLedger:
    """Shard records kept in a run's store under ``shards/<key>.json`` (:class:`ShardRecord`)."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def read(self, key: str) -> ShardRecord | None:
        return ShardRecord.load(self.store, key)

    def is_done(self, key: str) -> bool:
        record = self.read(key)
        return record is not None and record.status == "done"

    def write(self, record: ShardRecord) -> None:
        record.save(self.store)

    def records(self) -> list[ShardRecord]:
        return ShardRecord.load_all(self.store)


__all__ = ["Shard", "ShardLedger", "ShardRecord", "iter_shards", "shard_at", "shard_cache_key", "shard_content_hash"]
