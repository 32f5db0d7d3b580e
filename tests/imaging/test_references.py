import pytest

from interleaf.imaging.references import (
    ImageReferenceError,
    bind_dialogue_images,
    load_image_reference,
    resolve_image_key,
)
from interleaf.state import ImageRef
from interleaf.storage.store import ObjectStore


def _ref(store: ObjectStore, key: str) -> ImageRef:
    return ImageRef(uri=store.url(key), sha256="0" * 64, width=8, height=8)


async def test_uri_and_key_resolve_inside_the_store(image_store: ObjectStore) -> None:
    key, _ = image_store.put_blob(b"png-bytes", "png")
    assert resolve_image_key(image_store.url(key), image_store) == key
    assert resolve_image_key(key, image_store) == key
    assert await load_image_reference(image_store.url(key), image_store) == b"png-bytes"


async def test_image_n_uses_the_bound_dialogue_images(image_store: ObjectStore) -> None:
    first, _ = image_store.put_blob(b"first", "png")
    second, _ = image_store.put_blob(b"second", "png")
    with bind_dialogue_images([_ref(image_store, first), _ref(image_store, second)]):
        assert await load_image_reference("image 2", image_store) == b"second"
        assert await load_image_reference("<Image #1>", image_store) == b"first"
        with pytest.raises(ImageReferenceError, match="has 2 image"):
            resolve_image_key("image 3", image_store)
    with pytest.raises(ImageReferenceError, match="none are bound"):
        resolve_image_key("image 1", image_store)


@pytest.mark.parametrize("reference", ["file:///etc/passwd", "/etc/passwd", "../escape.png", "s3://other/x.png"])
def test_references_outside_the_store_are_refused(image_store: ObjectStore, reference: str) -> None:
    with pytest.raises(ImageReferenceError, match="not in this run's store"):
        resolve_image_key(reference, image_store)


async def test_missing_object_is_named(image_store: ObjectStore) -> None:
    with pytest.raises(ImageReferenceError, match="no such object"):
        await load_image_reference("blobs/sha256/00/none.png", image_store)
