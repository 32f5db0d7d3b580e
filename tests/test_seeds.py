"""Seed reading: JSONL and Parquet, streaming, clear errors, seed images into the store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from interleaf.errors import SeedError
from interleaf.seeds import load_seed_images, read_seeds, scan_seeds, seeds_fingerprint
from interleaf.state import Seed
from interleaf.storage.store import ObjectStore


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines))
    return path


def png_bytes(size: tuple[int, int] = (8, 6), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def test_jsonl_fields_metadata_and_relative_images(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    path = write_lines(tmp_path / "seeds.jsonl", [
        json.dumps({"id": "s1", "prompt": "Draw a cat", "images": ["img/cat.png"], "situation": "x",
                    "source": "web", "tags": ["a"]}),
        "",
        json.dumps({"id": 7, "prompt": "Second", "images": "s3://bucket/dog.png", "metadata": {"k": 1}}),
    ])
    seeds = list(read_seeds(path))
    assert [s.id for s in seeds] == ["s1", "7"]
    assert seeds[0].images == [str(tmp_path / "img" / "cat.png")]
    assert seeds[0].situation == "x"
    assert seeds[0].metadata == {"source": "web", "tags": ["a"]}
    assert seeds[1].images == ["s3://bucket/dog.png"]
    assert seeds[1].metadata == {"k": 1}
    assert [s.id for s in read_seeds(path, limit=1)] == ["s1"]


def test_utf8_bom_and_gzip(tmp_path: Path) -> None:
    import gzip

    line = json.dumps({"id": "a", "prompt": "héllo"}, ensure_ascii=False).encode("utf-8")
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line + b"\n")
    assert next(read_seeds(tmp_path / "bom.jsonl")).prompt == "héllo"
    (tmp_path / "seeds.jsonl.gz").write_bytes(gzip.compress(line + b"\n"))
    assert next(read_seeds(tmp_path / "seeds.jsonl.gz")).id == "a"


def test_parquet_same_columns(tmp_path: Path) -> None:
    table = pa.table({
        "id": ["p1", "p2"],
        "prompt": ["one", "two"],
        "images": [["a.png"], []],
        "situation": [None, "s"],
        "score": [0.5, 1.5],
    })
    pq.write_table(table, tmp_path / "seeds.parquet")
    seeds = list(read_seeds(tmp_path / "seeds.parquet"))
    assert [s.id for s in seeds] == ["p1", "p2"]
    assert seeds[0].images == [str(tmp_path / "a.png")]
    assert seeds[1].situation == "s" and seeds[1].metadata == {"score": 1.5}


def test_parquet_errors_name_row_and_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a", "b"], "prompt": ["ok", ""]}), tmp_path / "empty.parquet")
    with pytest.raises(SeedError, match=r"empty\.parquet:2 \[prompt\]: must not be empty"):
        list(read_seeds(tmp_path / "empty.parquet"))
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "nocol.parquet")
    with pytest.raises(SeedError, match=r"no column 'prompt'"):
        list(read_seeds(tmp_path / "nocol.parquet"))
    pq.write_table(pa.table({"id": ["a"], "prompt": ["x"], "blob": [b"\x00\x01"]}), tmp_path / "bin.parquet")
    with pytest.raises(SeedError, match=r"\[blob\]: holds binary data"):
        list(read_seeds(tmp_path / "bin.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SeedError, match="not a readable Parquet file"):
        list(read_seeds(tmp_path / "junk.parquet"))


BAD_LINES: list[tuple[str, bytes, str]] = [
    ("not json", b"{id: 1}", r":1:2: invalid JSON"),
    ("array", b'[{"id": "a", "prompt": "p"}]', r"got array \(seeds files are JSONL"),
    ("scalar", b"42", r"expected a JSON object, got int"),
    ("no id", b'{"prompt": "p"}', r"\[id\]: missing required field 'id'"),
    ("bool id", b'{"id": true, "prompt": "p"}', r"\[id\]: must be a string"),
    ("empty id", b'{"id": " ", "prompt": "p"}', r"\[id\]: must not be empty"),
    ("id newline", b'{"id": "a\\nb", "prompt": "p"}', r"\[id\]: contains control character"),
    ("no prompt", b'{"id": "a"}', r"\[prompt\]: missing required field"),
    ("prompt type", b'{"id": "a", "prompt": ["x"]}', r"\[prompt\]: must be a string, got list"),
    ("prompt nul", b'{"id": "a", "prompt": "x\\u0000y"}', r"\[prompt\]: contains control character"),
    ("surrogate", b'{"id": "a", "prompt": "x\\ud800"}', r"\[prompt\]: contains an unpaired surrogate"),
    ("images type", b'{"id": "a", "prompt": "p", "images": 3}', r"\[images\]: must be a list"),
    ("image item", b'{"id": "a", "prompt": "p", "images": [1]}', r"\[images\[0\]\]: must be a path"),
    ("image empty", b'{"id": "a", "prompt": "p", "images": [""]}', r"\[images\[0\]\]: must not be empty"),
    ("situation", b'{"id": "a", "prompt": "p", "situation": 5}', r"\[situation\]: must be a string"),
    ("metadata", b'{"id": "a", "prompt": "p", "metadata": []}', r"\[metadata\]: must be an object"),
    ("latin1", '{"id": "a", "prompt": "café"}'.encode("latin-1"), r":1:\d+: invalid UTF-8 byte 0xe9"),
    ("utf16", '{"id": "a", "prompt": "p"}'.encode("utf-16"), r"UTF-16"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"(NUL bytes|invalid UTF-8|invalid JSON)"),
    ("deep", b"[" * 100000 + b"]" * 100000, r"(nested too deeply|invalid JSON|expected a JSON object)"),
]


@pytest.mark.parametrize(("label", "line", "pattern"), BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_seed_lines_give_located_errors(tmp_path: Path, label: str, line: bytes, pattern: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(SeedError, match=pattern) as info:
        list(read_seeds(path))
    assert str(path) in str(info.value)


def test_huge_line_and_huge_prompt(tmp_path: Path) -> None:
    from interleaf import seeds as seeds_mod

    path = tmp_path / "huge.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "' + b"x" * (seeds_mod.MAX_LINE_BYTES + 10) + b'"}\n')
    with pytest.raises(SeedError, match=r"huge\.jsonl:1: line is longer than"):
        list(read_seeds(path))
    path.write_text(json.dumps({"id": "a", "prompt": "y" * (seeds_mod.MAX_PROMPT_CHARS + 1)}) + "\n")
    with pytest.raises(SeedError, match=r"\[prompt\]: is 200,001 characters long"):
        list(read_seeds(path))


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dup.jsonl", [
        json.dumps({"id": "a", "prompt": "p"}),
        json.dumps({"id": "b", "prompt": "p"}),
        json.dumps({"id": "a", "prompt": "q"}),
    ])
    with pytest.raises(SeedError, match=r"dup\.jsonl:3 \[id\]: duplicate seed id 'a' \(first on line 1\)"):
        list(read_seeds(path))


def test_reading_is_streamed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [
        json.dumps({"id": "ok", "prompt": "p"}),
        "{broken",
    ])
    it = read_seeds(path)
    assert next(it).id == "ok"  # the bad second line is not read yet
    with pytest.raises(SeedError, match=r"s\.jsonl:2"):
        next(it)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="seeds file not found"):
        list(read_seeds(tmp_path / "nope.jsonl"))
    with pytest.raises(SeedError, match="is a folder"):
        list(read_seeds(tmp_path))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(SeedError, match="holds no seeds"):
        scan_seeds(tmp_path / "empty.jsonl")


def test_scan_and_fingerprint(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [json.dumps({"id": f"s{i}", "prompt": "p"}) for i in range(5)])
    scan = scan_seeds(path)
    assert scan.count == 5 and scan.fingerprint == seeds_fingerprint(path)
    assert scan_seeds(path, limit=2).count == 2
    before = scan.fingerprint
    path.write_text(path.read_text() + json.dumps({"id": "s5", "prompt": "p"}) + "\n")
    assert seeds_fingerprint(path) != before


def test_seeds_from_s3(s3_env) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_env.create_bucket()
    store = ObjectStore(f"s3://{bucket}")
    line = json.dumps({"id": "a", "prompt": "p", "images": ["pics/a.png"]}) + "\n"
    store.put_bytes("in/seeds.jsonl", line.encode())
    seeds = list(read_seeds(f"s3://{bucket}/in/seeds.jsonl"))
    assert seeds[0].images == [f"s3://{bucket}/in/pics/a.png"]
    assert seeds_fingerprint(f"s3://{bucket}/in/seeds.jsonl").startswith("sha256:")


async def test_load_seed_images_into_store(tmp_path: Path, store: ObjectStore) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes((8, 6)))
    Image.new("RGB", (4, 4), "blue").save(tmp_path / "b.bmp")
    seed = Seed(id="s", prompt="p", images=[str(tmp_path / "a.png"), str(tmp_path / "b.bmp")])
    refs = await load_seed_images(seed, store)
    assert [(r.width, r.height, r.mime) for r in refs] == [(8, 6, "image/png"), (4, 4, "image/png")]
    for ref in refs:
        key = store.key_of(ref.uri)
        assert key.startswith(f"blobs/sha256/{ref.sha256[:2]}/{ref.sha256}")
        assert Image.open(io.BytesIO(store.get_bytes(key))).size == (ref.width, ref.height)
    again = await load_seed_images(seed, store)
    assert again == refs
    assert len(store.list("blobs")) == 2


async def test_load_seed_images_errors(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "store")
    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "notimg.png").write_text("hello")
    with pytest.raises(SeedError, match=r"\[images\[0\]\]: seed 's': image file not found"):
        await load_seed_images(Seed(id="s", prompt="p", images=[str(tmp_path / "missing.png")]), store)
    seed = Seed(id="s", prompt="p", images=[str(tmp_path / "ok.png"), str(tmp_path / "notimg.png")])
    with pytest.raises(SeedError, match=r"notimg\.png \[images\[1\]\]: seed 's': not a readable image"):
        await load_seed_images(seed, store)
