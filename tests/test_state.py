"""Dialogue state: exact JSON round trips (property-based), reducers and tree helpers."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from interleaf.state import (
    CandidateTask,
    DialogueState,
    ImagePart,
    ImageRef,
    Message,
    ModelCall,
    PreferencePair,
    Prompt,
    Provenance,
    Score,
    Seed,
    TextPart,
    ToolCall,
    TreeNode,
    append_unique,
    merge_by_key,
)

text = st.text(max_size=20)
ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=8)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_dict = st.dictionaries(text, json_value, max_size=3)

image_ref = st.builds(
    ImageRef,
    uri=ident.map(lambda s: f"blobs/sha256/ab/{s}.png"),
    sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    width=st.integers(1, 4096),
    height=st.integers(1, 4096),
    mime=st.sampled_from(["image/png", "image/jpeg"]),
)
part = st.builds(TextPart, text=text) | st.builds(
    ImagePart, image=image_ref, caption=st.none() | text, marker=st.none() | text
)
message = st.builds(Message, role=st.sampled_from(["system", "user", "assistant"]),
                    parts=st.lists(part, max_size=4))
score = st.builds(Score, value=st.none() | finite, reason=text, raw=st.none() | text)
model_call = st.builds(
    ModelCall, model=ident, provider_model=ident, prompt_tokens=st.none() | st.integers(0, 10**6),
    completion_tokens=st.none() | st.integers(0, 10**6), cost=st.none() | finite,
    latency_s=finite, attempts=st.integers(1, 5), cached=st.booleans(),
)
tool_call = st.builds(ToolCall, tool=ident, arguments=json_dict, ok=st.booleans(), error=st.none() | text,
                      output=st.none() | json_dict, seconds=finite)
provenance = st.builds(
    Provenance, node=ident, kind=ident, model=st.none() | ident, calls=st.lists(model_call, max_size=2),
    tool_calls=st.lists(tool_call, max_size=2), seed=st.none() | st.integers(0, 2**32),
    seconds=finite, notes=st.lists(text, max_size=2),
)
seed = st.builds(Seed, id=ident, prompt=text, images=st.lists(text, max_size=2),
                 situation=st.none() | text, metadata=json_dict)


@st.composite
def trees(draw: st.DrawFn) -> dict[str, TreeNode]:
    """A random tree: every node's parent is an earlier node, ids encode the path."""
    nodes: dict[str, TreeNode] = {}
    for i in range(draw(st.integers(0, 7))):
        parent = draw(st.none() | st.sampled_from(sorted(nodes))) if nodes else None
        turn = 0 if parent is None else nodes[parent].turn + 1
        node_id = f"v0.{i}" if parent is None else f"{parent}.{i}"
        nodes[node_id] = TreeNode(
            id=node_id, parent=parent, turn=turn, candidate=i, user=draw(message),
            assistant=draw(st.none() | message), status=draw(st.sampled_from(["alive", "pruned", "failed"])),
            reason=draw(st.none() | text), scores=draw(st.dictionaries(ident, score, max_size=3)),
            follow_up=draw(st.none() | message), tags=draw(json_dict),
            provenance=draw(st.lists(provenance, max_size=2)),
        )
    return nodes


task = st.builds(CandidateTask, node_id=ident, parent=st.none() | ident, turn=st.integers(0, 9),
                 candidate=st.integers(0, 9), user=message, model=st.none() | ident, tags=json_dict)
pair = st.builds(
    PreferencePair, id=ident, level=st.sampled_from(["local", "global"]), turn=st.none() | st.integers(0, 9),
    history=st.none() | ident, response_1=ident, response_2=ident,
    preference=st.dictionaries(ident, st.sampled_from([0, 1, 2]), max_size=3),
    overall=st.sampled_from([0, 1, 2]), margin=finite, reasons=st.dictionaries(ident, text, max_size=2),
)


@st.composite
def states(draw: st.DrawFn) -> DialogueState:
    return DialogueState(
        seed=draw(seed),
        prompts=draw(st.lists(st.builds(Prompt, variant=st.integers(0, 5), message=message,
                                        situation=st.none() | text, tags=json_dict), max_size=2)),
        nodes=draw(trees()),
        turn=draw(st.integers(0, 10)),
        tasks=draw(st.lists(task, max_size=2)),
        task=draw(st.none() | task),
        dialogue_scores=draw(st.dictionaries(ident, st.dictionaries(ident, score, max_size=2), max_size=2)),
        pairs=draw(st.lists(pair, max_size=2)),
        records=draw(json_dict),
        status=draw(st.sampled_from(["running", "done", "failed"])),
        error=draw(st.none() | text),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_state_json_round_trip_is_exact(state: DialogueState) -> None:
    dumped = state.model_dump_json()
    again = DialogueState.model_validate_json(dumped)
    assert again == state
    assert again.model_dump_json() == dumped
    # The python-mode JSON dump (what runs store) round-trips through the stdlib too.
    via_stdlib = DialogueState.model_validate(json.loads(json.dumps(state.model_dump(mode="json"))))
    assert via_stdlib == state


@settings(max_examples=40, deadline=None)
@given(trees())
def test_leaves_and_paths_agree_with_a_brute_force_walk(nodes: dict[str, TreeNode]) -> None:
    state = DialogueState(seed=Seed(id="s", prompt="p"), nodes=nodes)
    for node_id in nodes:
        chain = state.path(node_id)
        assert chain[-1].id == node_id and chain[0].parent is None
        assert all(child.parent == parent.id for parent, child in itertools.pairwise(chain))
        history = state.history(node_id)
        expected: list[Message] = []
        for n in chain:
            expected += [n.user] + ([n.assistant] if n.assistant is not None else [])
        assert history == expected
    expected_leaves = sorted(
        n.id for n in nodes.values()
        if all(a.status == "alive" for a in state.path(n.id))
        and not any(c.parent == n.id and c.status == "alive" for c in nodes.values())
    )
    assert [n.id for n in state.leaves()] == expected_leaves


def _node(node_id: str, parent: str | None, status: str = "alive", turn: int = 0) -> TreeNode:
    return TreeNode(id=node_id, parent=parent, turn=turn, user=Message.user(f"q {node_id}"),
                    assistant=Message(role="assistant", parts=[TextPart(text=f"a {node_id}")]),
                    status=status)  # type: ignore[arg-type]


def test_tree_helpers_on_a_small_tree() -> None:
    nodes = [
        _node("v0.0", None), _node("v0.1", None, "pruned"),
        _node("v0.0.0", "v0.0", turn=1), _node("v0.0.1", "v0.0", "failed", turn=1),
        _node("v0.1.0", "v0.1", turn=1),  # alive under a pruned parent: not a complete dialogue
    ]
    state = DialogueState(seed=Seed(id="s", prompt="p"), nodes={n.id: n for n in nodes})
    assert [n.id for n in state.children(None)] == ["v0.0", "v0.1"]
    assert [n.id for n in state.children("v0.0")] == ["v0.0.0", "v0.0.1"]
    assert [n.id for n in state.alive_at(1)] == ["v0.0.0", "v0.1.0"]
    assert [n.id for n in state.leaves()] == ["v0.0.0"]
    assert [m.text for m in state.history("v0.0.0")] == ["q v0.0", "a v0.0", "q v0.0.0", "a v0.0.0"]
    assert state.history(None) == []


def test_path_reports_dangling_and_cyclic_parents() -> None:
    dangling = DialogueState(seed=Seed(id="s", prompt="p"), nodes={"b": _node("b", "a")})
    with pytest.raises(KeyError, match="no tree node 'a' \\(parent of 'b'\\)"):
        dangling.path("b")
    cyclic = DialogueState(seed=Seed(id="s", prompt="p"), nodes={"a": _node("a", "b"), "b": _node("b", "a")})
    with pytest.raises(ValueError, match="cycle"):
        cyclic.path("a")
    assert cyclic.leaves() == []


def test_reducers_merge_parallel_updates() -> None:
    assert merge_by_key(None, {"a": 1}) == {"a": 1}
    assert merge_by_key({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    assert merge_by_key({"a": 1}, None) == {"a": 1}
    p1 = PreferencePair(id="p1", level="local", response_1="a", response_2="b")
    p2 = PreferencePair(id="p2", level="local", response_1="a", response_2="c")
    assert append_unique([p1], [p1, p2]) == [p1, p2]  # a replayed update adds nothing twice
    assert append_unique(None, [p2]) == [p2]


def test_scores_must_be_finite_or_none() -> None:
    assert Score(value=None).value is None
    with pytest.raises(ValidationError):
        Score(value=float("nan"))
    with pytest.raises(ValidationError):
        Score(value=float("inf"))


def test_parts_are_discriminated_and_unknown_fields_rejected() -> None:
    data: dict[str, Any] = {"role": "user", "parts": [
        {"type": "text", "text": "hi"},
        {"type": "image", "image": {"uri": "blobs/x.png", "sha256": "0" * 64, "width": 2, "height": 3}},
    ]}
    msg = Message.model_validate(data)
    assert msg.text == "hi" and msg.images[0].width == 2
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "user", "parts": [{"type": "video", "url": "x"}]})
    with pytest.raises(ValidationError):
        Seed.model_validate({"id": "s", "prompt": "p", "api_key": "sk-nope"})
