"""Small hand-built dialogue trees for node-kind tests."""

from __future__ import annotations

from interleaf.state import ImagePart, ImageRef, Message, Score, TextPart, TreeNode


def answer(text: str, images: list[ImageRef] | None = None) -> Message:
    parts: list[TextPart | ImagePart] = [TextPart(text=text)]
    parts += [ImagePart(image=i, caption=f"picture {n}", marker=f"<Image, picture {n}>")
              for n, i in enumerate(images or [])]
    return Message(role="assistant", parts=parts)


def node(node_id: str, text: str = "an answer", *, images: list[ImageRef] | None = None,
         scores: dict[str, float | None] | None = None, status: str = "alive",
         follow_up: str | None = None) -> TreeNode:
    """A tree node whose parent and turn follow from its id (``v0.1.2``)."""
    parts = node_id.split(".")
    parent = ".".join(parts[:-1]) if len(parts) > 2 else None
    return TreeNode(
        id=node_id, parent=parent, turn=len(parts) - 2, candidate=int(parts[-1]),
        user=Message.user(f"question for {node_id}"), assistant=answer(text, images),
        status=status,  # type: ignore[arg-type]
        scores={k: Score(value=v, reason=f"{k} is {v}") for k, v in (scores or {}).items()},
        follow_up=Message.user(follow_up) if follow_up else None,
    )


def tree(*nodes: TreeNode) -> dict[str, TreeNode]:
    return {n.id: n for n in nodes}
