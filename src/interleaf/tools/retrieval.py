"""``retrieve_image``: the best-matching image of a captioned collection (BM25 over captions).

The collection is a JSONL file of ``{"uri": ..., "caption": ...}`` rows (any fsspec URI;
relative paths are resolved against the graph file's folder, relative image URIs against
the collection's folder). The chosen image is copied into the run store, so the dialogue
only refers to run-owned, content-addressed images.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from interleaf.errors import Location, SpecError
from interleaf.state import ImageRef
from interleaf.tools.base import Tool, ToolContext, ToolError, tool_kinds

if TYPE_CHECKING:
    from interleaf.storage.store import ObjectStore

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by for from in is it of on or the this to with".split())
_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


@dataclass(frozen=True)
class CollectionItem:
    uri: str
    caption: str
    line: int


class BM25Index:
    """Okapi BM25 over caption tokens."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avg_len = (sum(self.lengths) / len(docs)) if docs else 0.0
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(d))
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        out = []
        for tf, length in zip(self.tf, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg_len) if self.avg_len else self.k1
            s = 0.0
            for t in query:
                f = tf.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out


class RetrieveImageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str = Field(description="JSONL of {uri, caption}: a path (relative to the graph file) or URI.")
    top_k: int = Field(default=3, ge=1, le=100, description="How many ranked hits to report to the model.")
    min_score: float = Field(default=0.0, ge=0, description="Hits scoring at or below this are not matches.")


class RetrieveImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="What the image should show.", min_length=1)


class RetrievalHit(BaseModel):
    uri: str
    caption: str
    score: float


class RetrieveImageOutput(BaseModel):
    image: ImageRef
    caption: str
    source_uri: str
    score: float
    hits: list[RetrievalHit] = Field(default_factory=list)


def _is_uri(text: str) -> bool:
    return "://" in text


def _read_text(uri: str) -> str:
    import fsspec

    with fsspec.open(uri, "rt", encoding="utf-8") as fh:
        return fh.read()  # type: ignore[no-any-return]


def _read_bytes(uri: str) -> bytes:
    import fsspec

    with fsspec.open(uri, "rb") as fh:
        return fh.read()  # type: ignore[no-any-return]


def load_collection(uri: str) -> list[CollectionItem]:
    """Read and check a collection file; errors name the file, line and field."""
    try:
        text = _read_text(uri)
    except FileNotFoundError:
        raise SpecError("image collection not found", Location(uri), field="collection") from None
    base = uri.rsplit("/", 1)[0] if "/" in uri else "."
    items: list[CollectionItem] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON: {exc.msg}", Location(uri, n, exc.colno)) from None
        if not isinstance(row, dict):
            raise SpecError("each line must be a JSON object with 'uri' and 'caption'", Location(uri, n))
        for key in ("uri", "caption"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise SpecError(f"missing or empty string field {key!r}", Location(uri, n), field=key)
        item_uri = row["uri"]
        if not _is_uri(item_uri) and not item_uri.startswith("/"):
            item_uri = posixpath.join(base, item_uri) if _is_uri(base) else str(Path(base) / item_uri)
        items.append(CollectionItem(uri=item_uri, caption=row["caption"], line=n))
    if not items:
        raise SpecError("image collection is empty", Location(uri), field="collection")
    return items


def _decode(data: bytes) -> tuple[int, int, str, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "PNG"
            return img.width, img.height, _MIMES.get(fmt, "image/png"), fmt.lower().replace("jpeg", "jpg")
    except UnidentifiedImageError:
        raise ToolError("the retrieved file is not an image") from None


@tool_kinds.register("retrieve_image")
class RetrieveImage(Tool[RetrieveImageParams, RetrieveImageInput, RetrieveImageOutput]):
    """Find the collection image whose caption best matches the query."""

    kind = "retrieve_image"
    description = "Retrieve an existing image whose caption best matches the query (from a captioned collection)."
    Params = RetrieveImageParams
    Input = RetrieveImageInput
    Output = RetrieveImageOutput

    def __init__(self, name: str, params: RetrieveImageParams, *, store: ObjectStore | None = None,
                 base_dir: Path | None = None):
        super().__init__(name, params, store=store, base_dir=base_dir)
        self._items: list[CollectionItem] | None = None
        self._index: BM25Index | None = None
        self._lock = asyncio.Lock()

    def collection_uri(self) -> str:
        ref = self.params.collection
        if _is_uri(ref) or Path(ref).is_absolute():
            return ref
        return str((self.base_dir or Path.cwd()) / ref)

    async def _ensure_index(self) -> tuple[list[CollectionItem], BM25Index]:
        async with self._lock:
            if self._items is None or self._index is None:
                items = await asyncio.to_thread(load_collection, self.collection_uri())
                self._index = BM25Index([tokens(i.caption) for i in items])
                self._items = items
        return self._items, self._index

    async def preflight(self, ctx: ToolContext) -> str:
        """Load and index the collection (a missing or malformed file fails here, before the run)."""
        items, _ = await self._ensure_index()
        return f"collection {self.collection_uri()} loaded ({len(items)} images)"

    async def search(self, query: str) -> list[RetrievalHit]:
        """Hits ranked best first (ties keep collection order), at most ``top_k``."""
        items, index = await self._ensure_index()
        scores = index.scores(tokens(query))
        ranked = sorted(range(len(items)), key=lambda i: (-scores[i], i))
        return [
            RetrievalHit(uri=items[i].uri, caption=items[i].caption, score=round(scores[i], 6))
            for i in ranked[: self.params.top_k]
            if scores[i] > self.params.min_score
        ]

    async def __call__(self, inp: RetrieveImageInput, ctx: ToolContext) -> RetrieveImageOutput:
        hits = await self.search(inp.query)
        if not hits:
            raise ToolError(f"no image in the collection matches {inp.query!r}")
        best = hits[0]
        try:
            data = await asyncio.to_thread(_read_bytes, best.uri)
        except (FileNotFoundError, OSError) as exc:
            raise ToolError(f"cannot read collection image {best.uri!r}: {exc}") from None
        width, height, mime, ext = await asyncio.to_thread(_decode, data)
        key, sha = await ctx.store.aput_blob(data, ext)
        image = ImageRef(uri=ctx.store.url(key), sha256=sha, width=width, height=height, mime=mime)
        return RetrieveImageOutput(image=image, caption=best.caption, source_uri=best.uri, score=best.score, hits=hits)
