"""The simulator's templates, planted defects and judge, without the engine around them.

The central property: every defect the simulator plants is read back from the answer's
content alone (:func:`interleaf.datasets.sim_truth.read_answer`), and nothing else is.
"""

from __future__ import annotations

import asyncio
import doctest
import io
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

import interleaf.datasets.pruning_quality
import interleaf.datasets.sim_truth
import interleaf.testing.sim_text
import interleaf.testing.simulator
from interleaf.datasets.sim_truth import (
    DEFAULT_DEFECT_RATES,
    DEFECT_KINDS,
    canonical_markup,
    canonical_message,
    read_answer,
    validate_rates,
)
from interleaf.graphs.rubric import load_rubric
from interleaf.models.judge_format import parse_judge_output
from interleaf.models.markers import parse_markers, split_text
from interleaf.nodes.judging import judge_prompt
from interleaf.nodes.prompting import chat_messages
from interleaf.state import ImagePart, ImageRef, Message, TextPart
from interleaf.storage.store import ObjectStore
from interleaf.testing.demo import DEMO_SEEDS
from interleaf.testing.sim_text import (
    FOLLOW_UPS,
    PROBLEM_WORDS,
    conversation,
    draw_defects,
    follow_up,
    local_verdict,
    plan_answer,
    read_follow_up,
    render_markers,
    render_placeholders,
    subject_of,
)
from interleaf.testing.simulator import Simulator, parse_defect_rates

SYSTEM = "You are a helpful multimodal assistant. Wherever an image belongs, write a marker <Image, a caption>."
SEEDS = [line.split('"prompt": "')[1].split('"')[0] for line in DEMO_SEEDS.read_text().splitlines()] + [
    "Explain how tides work and show a diagram of the moon's pull.", "A fox jumping over a frozen river at dawn",
    "cats in space", "hi"]


@pytest.mark.parametrize("module", [interleaf.datasets.sim_truth, interleaf.testing.sim_text,
                                    interleaf.datasets.pruning_quality, interleaf.testing.simulator])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_subjects_of_the_demo_seeds() -> None:
    heads = [subject_of(s).head for s in SEEDS[:4]]
    assert heads == ["house", "flower", "logo", "cat"]
    assert subject_of("Can you help me plan my garden?").phrase == "your garden"
    assert subject_of("Can you help me plan my garden?").user_phrase == "my garden"


def _transcript(messages: list[dict[str, Any]]) -> str:
    """What the user simulator sees: the conversation as one transcript (images numbered)."""
    out, number = ["=== Conversation so far ===\n"], 0
    for m in messages:
        if m["role"] == "assistant":
            text, pieces, pos = m["content"], [], 0
            for mk in parse_markers(text):
                number += 1
                pieces.append(f"{text[pos:mk.start]}[image {number}]\n(caption: {mk.caption})\n")
                pos = mk.end
            out.append("\n[Assistant]\n" + "".join(pieces) + text[pos:])
        elif m["role"] == "user" and isinstance(m["content"], str):
            out.append("\n[User]\n" + m["content"])
    return "".join(out) + "\n\nWrite the user's next message."


def _dialogues(rates: dict[str, float], trials: int = 6, turns: int = 4) -> Iterator[tuple[Any, list[str], str]]:
    """(plan, earlier answers, answer text) for whole simulated dialogues over every seed."""
    for si, seed in enumerate(SEEDS):
        for trial in range(trials):
            rng = random.Random(f"{si}-{trial}")
            messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": seed}]
            answers: list[str] = []
            for turn in range(turns):
                plan = plan_answer(conversation(messages), rng, rates, (si, trial, turn))
                text = render_markers(plan)
                yield plan, list(answers), text
                answers.append(text)
                messages.append({"role": "assistant", "content": text})
                if plan.image_items():
                    carrier: list[dict[str, Any]] = [{"type": "text", "text": "Images in your previous answer:"}]
                    carrier += [{"type": "image_url", "image_url": {"url": "x"}}] * len(plan.image_items())
                    messages.append({"role": "user", "content": carrier})
                messages.append({"role": "user", "content": follow_up(_transcript(messages), rng)})


def test_every_planted_defect_is_read_back_from_the_content_and_nothing_else() -> None:
    seen: dict[str, int] = dict.fromkeys(DEFECT_KINDS, 0)
    clean = 0
    for plan, earlier, text in _dialogues(dict.fromkeys(DEFECT_KINDS, 0.35)):
        facts = read_answer(canonical_markup(text), [canonical_markup(e) for e in earlier])
        assert facts is not None and facts.defects == plan.defects, text
        for kind in plan.defects:
            seen[kind] += 1
        clean += not plan.defects
        # What the reader sees says so too: the subject is named, sentences end properly unless cut.
        assert plan.subject.head.lower() in text.lower() or plan.subject.head == "question"
        assert text.rstrip()[-1] in ".?!" or "truncated" in plan.defects
    assert min(seen.values()) >= 15 and clean >= 15, seen


def test_without_defect_rates_every_answer_is_clean() -> None:
    for plan, earlier, text in _dialogues({}, trials=2):
        assert not plan.defects
        assert read_answer(canonical_markup(text), [canonical_markup(e) for e in earlier]).defects == frozenset()  # type: ignore[union-attr]


def test_the_signature_rejects_text_the_simulator_did_not_write() -> None:
    texts = [canonical_markup(text) for _, _, text in _dialogues(DEFAULT_DEFECT_RATES, trials=2, turns=2)]
    assert all(read_answer(t) is not None for t in texts)
    # One word changed after the fact: the opener no longer matches the hash (7 times in 8).
    tampered = [t.replace(" the ", " a ", 1) for t in texts if " the " in t]
    tampered += [t[:-1] + ("!" if t.endswith(".") else ".") for t in texts]
    rejected = sum(read_answer(t) is None for t in tampered)
    assert len(tampered) > 20 and rejected >= 0.75 * len(tampered)
    for other in ("Sure! Here is a picture of a cat: <img:a cat>", "I would go with red. Tell me more.", ""):
        assert read_answer(other) is None


def test_defect_draws_are_independent_per_kind() -> None:
    keys = range(400)
    low = [draw_defects({"off_topic": 0.2, "unsafe": 0.1}, k, DEFECT_KINDS) for k in keys]
    high = [draw_defects({"off_topic": 0.2, "unsafe": 0.9}, k, DEFECT_KINDS) for k in keys]
    assert [("off_topic" in a) for a in low] == [("off_topic" in b) for b in high]
    assert 50 <= sum("off_topic" in a for a in low) <= 110
    with pytest.raises(ValueError, match="unknown defect kinds"):
        validate_rates({"typo": 0.1})
    assert parse_defect_rates(["0.25", "unsafe=0"]) == {**dict.fromkeys(DEFECT_KINDS, 0.25), "unsafe": 0.0}
    with pytest.raises(ValueError, match="KIND=RATE"):
        parse_defect_rates(["lots"])


def test_follow_ups_build_on_the_last_answer() -> None:
    kinds: set[str] = set()
    for plan, earlier, text in _dialogues(DEFAULT_DEFECT_RATES, trials=3, turns=2):
        if earlier:
            continue
        messages = [{"role": "user", "content": SEEDS[0]}, {"role": "assistant", "content": text}]
        question = follow_up(_transcript(messages), random.Random(text))
        kind, slots = read_follow_up(question)
        kinds.add(kind)
        assert kind in FOLLOW_UPS and question.endswith("?")
        if plan.defects and kind.startswith("complain_"):
            assert kind.removeprefix("complain_") in plan.defects
        if kind == "edit":
            assert int(slots["n"]) <= len(parse_markers(text))
    assert {"refine", "why", "change", "edit"} <= kinds and any(k.startswith("complain_") for k in kinds)


def test_native_tool_answers_carry_the_same_truth() -> None:
    messages = [{"role": "user", "content": "Draw a lighthouse at night."}]
    for key in range(40):
        plan = plan_answer(conversation(messages), random.Random(key), dict.fromkeys(DEFECT_KINDS, 0.5), key,
                           native=True)
        assert not plan.defects & {"missing_image", "image_text_mismatch"}
        captions = plan.planned_captions()
        text = render_placeholders(plan, [("[image 1]", captions[0])])
        # The engine puts the image where its placeholder was, captioned with the tool's prompt.
        before, after = text.split("[image 1]")
        ref = ImageRef(uri="file:///x.png", sha256="0" * 64, width=8, height=8)
        msg = Message(role="assistant", parts=[TextPart(text=before), ImagePart(image=ref, caption=captions[0]),
                                               TextPart(text=after)])
        facts = read_answer(canonical_message(msg))
        assert facts is not None and facts.defects == plan.defects
        assert len(facts.captions) == 1 and not facts.missing


# -- the judge over HTTP, on prompts the engine builds ---------------------------------------------

def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _message(text: str, ref: ImageRef) -> Message:
    """A markers answer as the engine stores it: each marker replaced by an image with its caption."""
    parts: list[TextPart | ImagePart] = []
    for piece in split_text(text, parse_markers(text)):
        parts.append(TextPart(text=piece) if isinstance(piece, str) else
                     ImagePart(image=ref, caption=piece.caption, marker=piece.raw))
    return Message(role="assistant", parts=parts)


def _judge_requests(store: ObjectStore) -> list[tuple[list[dict[str, Any]], Any]]:
    rubric = load_rubric("intermt-local")
    dims = rubric.dims("turn")
    key, sha = store.put_blob(_png(), "png")
    ref = ImageRef(uri=store.url(key), sha256=sha, width=8, height=8)
    out = []
    for plan, earlier, text in _dialogues(dict.fromkeys(DEFECT_KINDS, 0.3), trials=2, turns=2):
        history: list[Message] = []
        for e in earlier:
            history += [Message.user("Go on."), _message(e, ref)]
        candidate = _message(text, ref)
        prompt = judge_prompt(rubric, dims, [("Conversation so far", history),
                                             ("Candidate answer to the last user message",
                                              [Message.user("Go on."), candidate])])
        facts = read_answer(candidate, [m for m in history if m.role == "assistant"])
        assert facts is not None and facts.defects == plan.defects
        out.append((asyncio.run(chat_messages(None, prompt, store)), (facts, len(earlier))))
    return out


@pytest.fixture
def own_sim() -> Iterator[Simulator]:
    # Its own server: judge noise must not leak into the session-wide simulator other tests share.
    with Simulator(seed=5) as server:
        yield server


def test_the_judge_scores_from_the_truth_and_a_noisy_judge_errs_with_fitting_reasons(
        own_sim: Simulator, tmp_path: Any) -> None:
    rubric = load_rubric("intermt-local")
    scales = rubric.parse_scales(rubric.dims("turn"))
    requests = _judge_requests(ObjectStore(tmp_path / "store"))
    for noise in (0.0, 0.3):
        own_sim.configure(judge_noise=noise)
        wrong = lines = 0
        for messages, (facts, turn) in requests:
            reply = httpx.post(f"{own_sim.base_url}/chat/completions", timeout=10,
                               json={"model": "judge", "messages": messages}).json()
            parsed = parse_judge_output(reply["choices"][0]["message"]["content"], scales)
            assert parsed.complete
            for dim, (value, reason) in parsed.scores.items():
                expected = local_verdict(dim, facts, turn)
                assert expected is not None
                problem = any(w in reason.lower() for w in PROBLEM_WORDS)
                assert (value == 3) != problem, (noise, dim, value, reason)
                wrong += value != expected.value
                lines += 1
        if noise == 0:
            assert wrong == 0
        else:
            assert 0.2 * lines <= wrong <= 0.4 * lines, (wrong, lines)
    assert re.search(r"judge", str(own_sim.stats()["by_model"]))
