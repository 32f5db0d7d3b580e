"""Seed files: JSONL (one object a line) or Parquet with the same columns, read as a stream.

Each seed has ``id``, ``prompt``, optional ``images`` (paths or URIs; relative paths are
taken relative to the seeds file) and optional ``situation``; any other field is kept in
``Seed.metadata``. Every problem - bad JSON, a wrong type, a duplicate id, a line too
long, binary junk, a file that is not UTF-8 - raises :class:`~interleaf.errors.SeedError`
naming the file, the line (or row) and the field.

Files are read through fsspec, so ``s3://...`` seeds work like local ones; ``.gz`` and
other compressions are recognised by suffix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from interleaf.errors import Location, SeedError
from interleaf.state import ImageRef, Seed

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_ID_CHARS = 512
MAX_PROMPT_CHARS = 200_000
MAX_SITUATION_CHARS = 2_000
MAX_IMAGES = 64
MAX_IMAGE_REF_CHARS = 4_096
MAX_IMAGE_BYTES = 50 * 1024 * 1024
KNOWN_FIELDS = ("id", "prompt", "images", "situation", "metadata")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_IMAGE_FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"),
                  "WEBP": ("image/webp", "webp"), "GIF": ("image/gif", "gif")}


def _display(path: str | Path) -> str:
    return str(path)


def _is_parquet(path: str) -> bool:
    name = path.lower()
    return name.endswith(_PARQUET_SUFFIXES)


def _open(path: str, where: Location) -> IO[bytes]:
    import fsspec

    try:
        return fsspec.open(path, "rb", compression="infer").open()  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise SeedError("seeds file not found", where) from None
    except IsADirectoryError:
        raise SeedError("is a folder, not a seeds file", where) from None
    except PermissionError:
        raise SeedError("permission denied reading the seeds file", where) from None
    except (OSError, ValueError) as exc:
        raise SeedError(f"cannot open the seeds file: {exc}", where) from None


def _base_of(path: str) -> str:
    """The folder relative image paths are resolved against."""
    if _URI.match(path) and not path.startswith("file://"):
        return path.rsplit("/", 1)[0]
    local = path[len("file://"):] if path.startswith("file://") else path
    return os.path.dirname(os.path.abspath(local))


def _resolve_image(ref: str, base: str) -> str:
    if _URI.match(ref) or ref.startswith("data:") or os.path.isabs(ref):
        return ref
    if _URI.match(base):
        return posixpath.normpath(f"{base}/{ref}").replace(":/", "://", 1)
    return os.path.normpath(os.path.join(base, ref))


def _check_text(value: str, where: Location, field: str, max_chars: int, *, multiline: bool) -> str:
    if len(value) > max_chars:
        raise SeedError(f"is {len(value):,} characters long (max {max_chars:,})", where, field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SeedError("contains an unpaired surrogate escape (not valid Unicode text)", where, field) from None
    bad = _CONTROL.search(value) if multiline else re.search(r"[\x00-\x1f\x7f]", value)
    if bad:
        raise SeedError(
            f"contains control character {bad.group()!r} at position {bad.start()} (binary data?)", where, field
        )
    return value


def _jsonable(value: Any, where: Location, field: str, depth: int = 0) -> Any:
    """Metadata values as plain JSON types (Parquet may give dates, decimals, bytes)."""
    if depth > 64:
        raise SeedError("is nested more than 64 levels deep", where, field)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SeedError("contains an unpaired surrogate escape", where, field) from None
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where, f"{field}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, where, f"{field}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise SeedError("holds binary data; seed fields must be text, numbers, lists or objects", where, field)
    raise SeedError(f"has a value of type {type(value).__name__} that JSON cannot hold", where, field)


def seed_from_object(obj: Any, where: Location, base: str) -> Seed:
    """Validate one seed object (a JSON object or a Parquet row) into a :class:`Seed`."""
    if not isinstance(obj, dict):
        kind = "array" if isinstance(obj, list) else type(obj).__name__
        hint = " (seeds files are JSONL: one JSON object per line)" if isinstance(obj, list) else ""
        raise SeedError(f"expected a JSON object, got {kind}{hint}", where)
    raw_id = obj.get("id")
    if raw_id is None:
        raise SeedError("missing required field 'id'", where, "id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise SeedError(f"must be a string (or an integer), got {type(raw_id).__name__}", where, "id")
    seed_id = str(raw_id)
    if not seed_id.strip():
        raise SeedError("must not be empty", where, "id")
    _check_text(seed_id, where, "id", MAX_ID_CHARS, multiline=False)

    prompt = obj.get("prompt")
    if prompt is None:
        raise SeedError("missing required field 'prompt'", where, "prompt")
    if not isinstance(prompt, str):
        raise SeedError(f"must be a string, got {type(prompt).__name__}", where, "prompt")
    if not prompt.strip():
        raise SeedError("must not be empty", where, "prompt")
    _check_text(prompt, where, "prompt", MAX_PROMPT_CHARS, multiline=True)

    images_raw = obj.get("images")
    if images_raw is None:
        images_list: list[Any] = []
    elif isinstance(images_raw, str):
        images_list = [images_raw]
    elif isinstance(images_raw, list | tuple):
        images_list = list(images_raw)
    else:
        raise SeedError(f"must be a list of paths or URIs, got {type(images_raw).__name__}", where, "images")
    if len(images_list) > MAX_IMAGES:
        raise SeedError(f"has {len(images_list)} images (max {MAX_IMAGES})", where, "images")
    images: list[str] = []
    for i, ref in enumerate(images_list):
        field = f"images[{i}]"
        if not isinstance(ref, str):
            raise SeedError(f"must be a path or URI string, got {type(ref).__name__}", where, field)
        if not ref.strip():
            raise SeedError("must not be empty", where, field)
        if not ref.startswith("data:"):
            _check_text(ref, where, field, MAX_IMAGE_REF_CHARS, multiline=False)
        images.append(_resolve_image(ref.strip(), base))

    situation = obj.get("situation")
    if situation is not None:
        if not isinstance(situation, str):
            raise SeedError(f"must be a string, got {type(situation).__name__}", where, "situation")
        _check_text(situation, where, "situation", MAX_SITUATION_CHARS, multiline=True)
        situation = situation.strip() or None

    metadata: dict[str, Any] = {}
    given_meta = obj.get("metadata")
    if given_meta is not None:
        if not isinstance(given_meta, dict):
            raise SeedError(f"must be an object, got {type(given_meta).__name__}", where, "metadata")
        metadata.update(_jsonable(given_meta, where, "metadata"))
    for key, value in obj.items():
        if key not in KNOWN_FIELDS:
            metadata[str(key)] = _jsonable(value, where, str(key))
    return Seed(id=seed_id, prompt=prompt, images=images, situation=situation, metadata=metadata)


def _decode_line(raw: bytes, where: Location, first: bool) -> str:
    if first:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise SeedError("file is UTF-16 encoded; seeds files must be UTF-8", where)
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
    if b"\x00" in raw:
        hint = " (UTF-16 without a byte-order mark?)" if first else ""
        raise SeedError(f"contains NUL bytes: binary data, not JSON text{hint}", where)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", "replace")
        loc = Location(where.path, where.line, len(prefix) + 1)
        raise SeedError(
            f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; seeds files must be UTF-8 encoded", loc
        ) from None


def _raw_lines(fh: IO[bytes], where_path: str) -> Iterator[bytes]:
    """Lines of a binary stream, each at most ``MAX_LINE_BYTES`` (any file object with ``read``)."""
    buf = b""
    line_no = 1
    while True:
        try:
            chunk = fh.read(1 << 16)
        except (OSError, EOFError, ValueError) as exc:
            raise SeedError(f"cannot read the seeds file: {exc}", Location(where_path, line_no)) from None
        if chunk:
            buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end - start > MAX_LINE_BYTES:
                break
            yield buf[start : end + 1]
            line_no += 1
            start = end + 1
        buf = buf[start:]
        if len(buf) > MAX_LINE_BYTES:
            limit = MAX_LINE_BYTES // (1024 * 1024)
            raise SeedError(f"line is longer than {limit} MiB", Location(where_path, line_no))
        if not chunk:
            if buf:
                yield buf
            return


def _iter_jsonl(path: str, base: str) -> Iterator[tuple[int, Seed]]:
    shown = _display(path)
    with _open(path, Location(shown)) as fh:
        for line_no, raw in enumerate(_raw_lines(fh, shown), start=1):
            where = Location(shown, line_no)
            text = _decode_line(raw, where, line_no == 1).strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SeedError(f"invalid JSON: {exc.msg}", Location(shown, line_no, exc.colno)) from None
            except RecursionError:
                raise SeedError("JSON is nested too deeply", where) from None
            yield line_no, seed_from_object(obj, where, base)


def _iter_parquet(path: str, base: str) -> Iterator[tuple[int, Seed]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shown = _display(path)
    with _open(path, Location(shown)) as fh:
        try:
            pfile = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SeedError(f"not a readable Parquet file: {exc}", Location(shown)) from None
        names = set(pfile.schema_arrow.names)
        for required in ("id", "prompt"):
            if required not in names:
                raise SeedError(f"Parquet file has no column {required!r} (columns: {sorted(names)})",
                                Location(shown), required)
        row = 0
        try:
            for batch in pfile.iter_batches(batch_size=256):
                for obj in batch.to_pylist():
                    row += 1
                    yield row, seed_from_object(obj, Location(shown, row), base)
        except (pa.ArrowException, OSError) as exc:
            raise SeedError(f"Parquet data unreadable after row {row}: {exc}", Location(shown, row + 1)) from None


def read_seeds(path: Path | str, *, limit: int | None = None) -> Iterator[Seed]:
    """Stream the seeds of a JSONL or Parquet file (local path or fsspec URI), checking each.

    Raises :class:`SeedError` at the first bad line or row, or at a repeated id.
    """
    text = str(path)
    base = _base_of(text)
    reader = _iter_parquet if _is_parquet(text) else _iter_jsonl
    if limit is not None and limit <= 0:
        return
    seen: dict[str, int] = {}
    count = 0
    for line_no, seed in reader(text, base):
        first = seen.get(seed.id)
        if first is not None:
            unit = "row" if reader is _iter_parquet else "line"
            raise SeedError(f"duplicate seed id {seed.id!r} (first on {unit} {first})",
                            Location(_display(text), line_no), "id")
        seen[seed.id] = line_no
        yield seed
        count += 1
        if limit is not None and count >= limit:
            return


def seeds_fingerprint(path: Path | str) -> str:
    """``sha256:<hex>`` of the seeds file's bytes (a streaming pass)."""
    text = str(path)
    where = Location(_display(text))
    import fsspec

    digest = hashlib.sha256()
    try:
        with fsspec.open(text, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise SeedError("seeds file not found", where) from None
    except (OSError, ValueError) as exc:
        raise SeedError(f"cannot read the seeds file: {exc}", where) from None
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class SeedScan:
    """Result of checking a whole seeds file before a run: how many seeds and the file hash."""

    count: int
    fingerprint: str


def scan_seeds(path: Path | str, *, limit: int | None = None) -> SeedScan:
    """Check every seed (one streaming pass; only ids are held) and hash the file."""
    count = sum(1 for _ in read_seeds(path, limit=limit))
    if count == 0 and (limit is None or limit > 0):
        raise SeedError("the seeds file holds no seeds", Location(_display(str(path))))
    return SeedScan(count=count, fingerprint=seeds_fingerprint(path))


# -- seed images ------------------------------------------------------------------------------

def _read_source(ref: str) -> bytes:
    import fsspec

    with fsspec.open(ref, "rb") as fh:
        data = fh.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    return data  # type: ignore[no-any-return]


def _normalise_image(data: bytes) -> tuple[bytes, int, int, str, str]:
    """``(bytes, width, height, mime, ext)``; formats models may not take are converted to PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        width, height = img.size
        known = _IMAGE_FORMATS.get(img.format or "")
        if known is not None:
            return data, width, height, known[0], known[1]
        out = io.BytesIO()
        img.convert("RGBA" if "A" in img.getbands() else "RGB").save(out, format="PNG")
        return out.getvalue(), width, height, "image/png", "png"


async def load_seed_images(seed: Seed, store: ObjectStore) -> list[ImageRef]:
    """Copy a seed's images into ``store`` as content-addressed blobs and return their refs.

    Raises :class:`SeedError` naming the seed, the image and the ``images[i]`` field when an
    image cannot be read or is not an image.
    """
    refs: list[ImageRef] = []
    for i, src in enumerate(seed.images):
        where = Location(src[:200])
        field = f"images[{i}]"
        try:
            if src.startswith(store.uri + "/"):
                data = await store.aget_bytes(store.key_of(src))
            else:
                data = await asyncio.to_thread(_read_source, src)
        except FileNotFoundError:
            raise SeedError(f"seed {seed.id!r}: image file not found", where, field) from None
        except Exception as exc:
            raise SeedError(f"seed {seed.id!r}: cannot read image: {exc}", where, field) from None
        try:
            data, width, height, mime, ext = await asyncio.to_thread(_normalise_image, data)
        except Exception as exc:
            raise SeedError(f"seed {seed.id!r}: not a readable image: {exc}", where, field) from None
        key, sha = await store.aput_blob(data, ext)
        refs.append(ImageRef(uri=store.url(key), sha256=sha, width=width, height=height, mime=mime))
    return refs
