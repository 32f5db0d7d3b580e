import base64
import io

from PIL import Image

from interleaf.models.messages import dialogue_images, to_openai_messages
from interleaf.state import ImagePart, ImageRef, Message, TextPart
from interleaf.storage.store import ObjectStore


def _stored_png(store: ObjectStore, size: tuple[int, int], colour: str) -> ImageRef:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    key, sha = store.put_blob(buf.getvalue(), "png")
    return ImageRef(uri=store.url(key), sha256=sha, width=size[0], height=size[1])


def _decode(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


async def test_history_becomes_openai_parts_with_labels_and_resized_images(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    big = _stored_png(store, (300, 120), "red")
    small = _stored_png(store, (20, 20), "blue")
    history = [
        Message.user("what is this?", images=[big]),
        Message(role="assistant", parts=[TextPart(text="A red thing. "),
                                         ImagePart(image=small, caption="blue square", marker="<Image, blue square>")]),
        Message.user("edit image 2 please"),
    ]
    msgs = await to_openai_messages(history, store, max_side=64, transport="data_url", system="be brief")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "user"]
    first = msgs[1]["content"]
    assert first[0] == {"type": "text", "text": "[image 1]"}
    shrunk = _decode(first[1]["image_url"]["url"])
    assert max(shrunk.size) == 64 and shrunk.size[0] > shrunk.size[1]
    assert msgs[2]["content"] == "A red thing. <Image, blue square>"
    shown = msgs[3]["content"]
    assert {"type": "text", "text": "[image 2]"} in shown
    assert _decode(shown[-1]["image_url"]["url"]).size == (20, 20)
    assert msgs[4] == {"role": "user", "content": "edit image 2 please"}
    assert dialogue_images(history) == [big, small]


async def test_url_transport_falls_back_to_data_url_for_local_files(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    ref = _stored_png(store, (10, 10), "green")
    remote = ImageRef(uri="https://example.org/cat.png", sha256="0" * 64, width=800, height=800)
    msgs = await to_openai_messages([Message.user("x", images=[ref, remote])], store, max_side=32, transport="url")
    urls = [p["image_url"]["url"] for p in msgs[0]["content"] if p["type"] == "image_url"]
    assert urls[0].startswith("data:image/png;base64,")
    assert urls[1] == "https://example.org/cat.png"
