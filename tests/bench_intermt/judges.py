r"""Simulator judges scripted to agree with the fixtures' people on a known share, and the CLI.

The fixtures under ``data/`` hold people's labels in the three released InterMT-Bench shapes.
Each scripted judge below is a :class:`~interleaf.testing.simulator.Rule`: it finds which item
(and which round) the prompt is about from the fixture's unique texts, and answers with the
value the table gives, in one of the answer variants real models write, so the metrics can be
checked against values worked out by hand in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result

from interleaf.bench.cli import bench_app
from interleaf.testing.simulator import Rule, SimAnswer, SimRequest

DATA = Path(__file__).resolve().parent / "data"
LOCAL = ["local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence"]
GLOBAL = ["context_awareness", "helpfulness", "crucial_step_recognition", "global_image_text_consistency",
          "style_coherence"]

#: What the score judge answers (None: an unreadable value, on both attempts). The people's labels
#: are in data/score.jsonl; the tests work out agreement and Pearson from both tables by hand.
JUDGE_LOCAL: dict[tuple[str, int], list[int | None]] = {
    ("s1", 1): [3, 2, 3, 3], ("s2", 1): [2, 2, 2, 3], ("s2", 2): [1, 2, 2, 3],
    ("s3", 1): [3, 2, 3, 3], ("s3", 2): [3, 2, 2, 3], ("s3", 3): [2, 2, None, 3],
}
JUDGE_GLOBAL: dict[str, list[int]] = {"s1": [3, 3, 2, 3, 3], "s2": [2, 3, 1, 3, 3], "s3": [2, 1, 2, 2, 3]}

#: What the pair judge prefers, as response 1 or 2 of the people's pair (0: a tie; None: unreadable).
JUDGE_PAIRS: dict[str, dict[str, int | None]] = {
    "lp0": dict(zip(LOCAL, [1, 2, 1, 1], strict=True)),
    "lp1": dict(zip(LOCAL, [2, 1, 1, 2], strict=True)),
    "lp2": dict(zip(LOCAL, [2, 1, None, 0], strict=True)),
    "gp0": dict(zip(GLOBAL, [1, 2, 2, 1, 1], strict=True)),
}

#: Crucial step: the judge's score of crucial_step_recognition (None: it breaks the format) and
#: the grade the grader gives its answer.
JUDGE_CRUCIAL: dict[str, int | None] = {"c1": 3, "c2": 3, "c3": None}
GRADES: dict[str, int] = {"c1": 5, "c2": 3, "c3": 1}


def _box(value: object) -> str:
    return "\\boxed{" + str(value) + "}"


def _line(dim: str, reason: str, value: object, style: str = "canonical") -> str:
    """One answer line in a variant real judges write."""
    if style == "bold":
        return f"[[**{dim}**, {reason}, {_box(value)}]]"
    if style == "double":  # double braces, and no comma after the dimension
        return f"[[{dim} {reason} \\boxed{{{{{value}}}}}]]"
    if style == "single":
        return f"[{dim}, {reason}, {_box(value)}]"
    return f"[[{dim}, {reason}, {_box(value)}]]"


class Counted:
    """A rule's reply that counts the judge requests it answered (probes apart)."""

    def __init__(self, reply: Callable[[SimRequest], str]):
        self.reply = reply
        self.calls = 0

    def __call__(self, req: SimRequest) -> SimAnswer:
        text = "\n".join(req.texts())
        if "DIMENSIONS:" not in text:
            return SimAnswer(content="OK")  # the preflight probe
        self.calls += 1
        return SimAnswer(content=self.reply(req))


def _reasked(req: SimRequest) -> bool:
    return "could not be read" in req.last_user_text


def score_judge(req: SimRequest) -> str:
    text = "\n".join(req.texts("user"))
    if "=== Candidate answer" in text:
        candidate = text.split("=== Candidate answer", 1)[1]
        found = re.search(r"Answer for (s\d) round (\d)", candidate)
        assert found, candidate
        item, rnd = found[1], int(found[2])
        style = {("s1", 1): "bold", ("s2", 2): "double"}.get((item, rnd), "canonical")
        return "\n".join(_line(dim, "about right" if v is not None else "hmm",
                               v if v is not None else "three", style)
                         for dim, v in zip(LOCAL, JUDGE_LOCAL[(item, rnd)], strict=True))
    found = re.search(r"Answer for (s\d) round", text)
    assert found and "=== Complete conversation" in text, text
    item = found[1]
    style = "single" if item == "s3" else "canonical"
    return "\n".join(_line(dim, "as a whole", v, style) for dim, v in zip(GLOBAL, JUDGE_GLOBAL[item], strict=True))


def pair_judge(req: SimRequest) -> str:
    text = "\n".join(req.texts("user"))
    found = re.search(r"\b(lp\d|gp\d) (first|second)", text)
    assert found, text
    item = found[1]
    # Which side was shown as ResponseA: the order may be swapped (order: balanced).
    first_shown = text.index(f"{item} first") < text.index(f"{item} second")
    dims = GLOBAL if item.startswith("gp") else LOCAL
    lines = []
    for dim in dims:
        wanted = JUDGE_PAIRS[item][dim]
        if wanted is None:
            lines.append(_line(dim, "cannot tell", "ResponseC"))
            continue
        if wanted == 0:
            lines.append(_line(dim, "equally good", "Tie"))
            continue
        side_a = wanted == 1 if first_shown else wanted == 2
        value = {"lp0": "ResponseA", "lp1": "{Response A}", "gp0": "A"}.get(item, "ResponseA") if side_a else \
            {"lp0": "ResponseB", "lp1": "{Response B}", "gp0": "B"}.get(item, "ResponseB")
        lines.append(_line(dim, "clearer", value, "single" if item == "gp0" else "canonical"))
    return "\n".join(lines)


def crucial_judge(req: SimRequest) -> str:
    text = "\n".join(req.texts("user"))
    item = re.search(r"\b(c\d) step", text)
    assert item, text
    value = JUDGE_CRUCIAL[item[1]]
    reason = f"{item[1]} judge: the crucial step is choosing the route; fulfilled in turn 1"
    if value is None:
        return f"The crucial step: {reason}. Score: three out of three."  # no [[...]] line at all
    return _line("crucial_step_recognition", reason, value)


def grader(req: SimRequest) -> str:
    text = "\n".join(req.texts("user"))
    item = re.search(r"\b(c\d) reference", text)
    assert item and f"{item[1]} judge" in text, text
    return _line("crucial_step_match", "compared with the reference", GRADES[item[1]])


def add_rules(sim: Any, **replies: Callable[[SimRequest], str]) -> dict[str, Counted]:
    """Script the simulator: ``model_substring=reply``; returns the counters by model."""
    counted = {model: Counted(reply) for model, reply in replies.items()}
    for model, reply in counted.items():
        sim.add_rule(Rule(model=model, reply=reply))
    return counted


def point_at(monkeypatch: Any, sim: Any) -> None:
    """The bench graphs' endpoints: the simulator (the judge's model string comes from --judge)."""
    monkeypatch.setenv("INTERLEAF_API_BASE", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim-local")


_app = typer.Typer()
_app.add_typer(bench_app, name="bench")


def bench(*args: str) -> Result:
    """``interleaf bench ...`` in this process (the sub-app as ``interleaf`` mounts it)."""
    return CliRunner().invoke(_app, ["bench", *args], catch_exceptions=False)
