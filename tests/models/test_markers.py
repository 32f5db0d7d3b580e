from interleaf.models.markers import parse_markers, split_text


def test_all_spellings_in_order_with_verbatim_text() -> None:
    text = "A <Image, a red bike> B <Image: blue sky at dusk> C <[Image] dog on grass> D <image a cat>"
    markers = parse_markers(text)
    assert [m.caption for m in markers] == ["a red bike", "blue sky at dusk", "dog on grass", "a cat"]
    assert [m.raw for m in markers] == ["<Image, a red bike>", "<Image: blue sky at dusk>",
                                        "<[Image] dog on grass>", "<image a cat>"]
    for m in markers:
        assert text[m.start:m.end] == m.raw
        assert m.action == "generate"


def test_edit_markers_carry_source_and_instruction() -> None:
    first, second, third = parse_markers(
        "<Image, edit of image 1: make it blue> <Image: Edited version of image 2 with a red roof> "
        "<Image, edit: brighter>"
    )
    assert (first.action, first.source, first.instruction) == ("edit", "image 1", "make it blue")
    assert (second.action, second.source) == ("edit", "image 2")
    assert second.instruction == "Edited version of image 2 with a red roof"
    assert (third.action, third.source, third.instruction) == ("edit", None, "brighter")


def test_non_markers_and_garbage_are_ignored() -> None:
    assert parse_markers("<Images are fun> <img src=x> a < b > c <Image, unclosed") == []
    assert parse_markers(None) == []  # type: ignore[arg-type]
    nested = parse_markers("<" * 5000 + "Image, x" + ">" * 10)
    assert [m.raw for m in nested] == ["<Image, x>"]


def test_split_text_round_trips() -> None:
    text = "before <Image, one> middle <Image: two>"
    pieces = split_text(text, parse_markers(text))
    rebuilt = "".join(p if isinstance(p, str) else p.raw for p in pieces)
    assert rebuilt == text
    assert [type(p).__name__ for p in pieces] == ["str", "Marker", "str", "Marker"]
