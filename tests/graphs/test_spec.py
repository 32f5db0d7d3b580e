"""The YAML graph schema and the line-aware safe loader."""

from __future__ import annotations

import pytest

from interleaf.errors import SpecError
from interleaf.graphs.loading import load_graph_text
from interleaf.graphs.spec import EdgeSpec, GraphSpec, NodeSpec, env_ref_problem, env_refs, resolve_env
from interleaf.graphs.yamlsource import load_yaml_text

FULL = """\
name: full
description: every section
version: 2
defaults:
  run_seed: 7
  concurrency: 3
models:
  judge:
    model: "${JUDGE_MODEL:-openai/gpt-4o-mini}"
    api_base: "${API_BASE:-}"
    api_key: "${OPENAI_API_KEY}"
    params: {temperature: 0.0}
tools:
  shout:
    kind: "tests.graphs.kinds:EchoTool"
    prefix: "!"
nodes:
  plan:
    kind: "tests.graphs.kinds:MakeTasks"
    params: {n: 2}
  answer:
    kind: "tests.graphs.kinds:AnswerTask"
    retry: {max_attempts: 4, retry_on: any, jitter: false}
  judge:
    kind: "tests.graphs.kinds:Echo"
    model: judge
edges:
  - {from: START, to: plan}
  - {from: plan, fan_out: tasks, to: answer, empty: judge}
  - {from: answer, to: judge}
  - {from: judge, if: has_alive, then: END, else: END}
"""


def test_full_spec_parses_into_typed_sections() -> None:
    spec, doc = load_graph_text(FULL, "full.yaml")
    assert spec.name == "full" and spec.version == 2
    assert spec.defaults.run_seed == 7 and spec.defaults.concurrency == 3
    assert spec.models["judge"].params == {"temperature": 0.0}
    assert spec.tools["shout"].kind == "tests.graphs.kinds:EchoTool"
    assert spec.tools["shout"].params() == {"prefix": "!"}
    assert spec.nodes["plan"].params == {"n": 2}
    retry = spec.nodes["answer"].retry
    assert retry is not None and retry.max_attempts == 4 and retry.retry_on == "any" and not retry.jitter
    fan, cond = spec.edges[1], spec.edges[3]
    assert fan.fan_out == "tasks" and fan.targets() == ["answer", "judge"]
    assert cond.if_ == "has_alive" and cond.targets() == ["END", "END"]
    assert str(doc.location(("nodes", "answer", "retry"))) == "full.yaml:23:5"
    assert str(doc.location(("edges", 2))) == "full.yaml:30:5"
    # Unknown paths fall back to the nearest known parent.
    assert str(doc.location(("nodes", "plan", "params", "missing"))) == "full.yaml:20:5"


def test_env_references_stay_verbatim_and_never_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    spec, _ = load_graph_text(FULL, "full.yaml")
    dumped = spec.model_dump_json(by_alias=True)
    assert "sk-very-secret" not in dumped and "${OPENAI_API_KEY}" in dumped
    key = spec.models["judge"].api_key
    assert key is not None and resolve_env(key) == "sk-very-secret"
    assert resolve_env(spec.models["judge"].model, {}) == "openai/gpt-4o-mini"
    assert resolve_env(spec.models["judge"].model, {"JUDGE_MODEL": "openai/x"}) == "openai/x"
    assert resolve_env("${API_BASE:-}", {}) == ""
    with pytest.raises(KeyError):
        resolve_env("${NOT_SET_ANYWHERE_42}", {})
    assert env_refs("a ${X} b ${Y:-1}") == ["X", "Y"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("${A}", None), ("x${A_1:-d}y${B}", None), ("$A and {B}", None), ("${A:-}", None),
        ("${", "unclosed"), ("${A", "unclosed"), ("${}", "bad"), ("${1A}", "bad"), ("${A B}", "bad"),
        ("${A-b}", "bad"), ("ok ${A} then ${B C}", "bad"),
    ],
)
def test_env_reference_syntax(value: str, problem: str | None) -> None:
    found = env_ref_problem(value)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def test_edge_forms() -> None:
    assert EdgeSpec.model_validate({"from": "a", "to": "b"}).targets() == ["b"]
    assert EdgeSpec.model_validate({"from": "a", "fan_out": "tasks", "to": "b"}).targets() == ["b", "END"]
    for bad in (
        {"from": "a"},
        {"from": "a", "if": "p", "then": "b"},
        {"from": "a", "if": "p", "then": "b", "else": "c", "to": "d"},
        {"from": "a", "to": "b", "then": "c"},
        {"from": "a", "to": "b", "args": {"x": 1}},
        {"from": "a", "to": "b", "empty": "c"},
    ):
        with pytest.raises(ValueError):
            EdgeSpec.model_validate(bad)


def test_node_model_forms() -> None:
    assert NodeSpec(kind="k", model="m").model_names() == ["m"]
    assert NodeSpec(kind="k", models=["a", "b"]).model_names() == ["a", "b"]
    assert NodeSpec(kind="k").model_names() == []
    with pytest.raises(ValueError):
        NodeSpec(kind="k", model="m", models=["m"])


def test_names_are_checked() -> None:
    base = {"name": "g", "edges": []}
    for bad in ("has space", "START", "END", "__start__", "a:b", "a|b", ""):
        with pytest.raises(ValueError):
            GraphSpec.model_validate({**base, "nodes": {bad: {"kind": "k"}}})
    GraphSpec.model_validate({**base, "nodes": {"ok-name_2": {"kind": "k"}}})


def test_loader_returns_plain_builtin_data() -> None:
    doc = load_yaml_text(
        "a: 2024-01-02\nb: [0x10, 1_000, 1.5, .inf, true, null, ~, '7']\nc: |\n  two\n  lines\n", "x.yaml"
    )
    assert doc.data == {"a": "2024-01-02", "b": [16, 1000, 1.5, float("inf"), True, None, None, "7"],
                        "c": "two\nlines\n"}
    assert type(doc.data["c"]) is str and type(doc.data["b"][0]) is int


def test_loader_expands_aliases_and_merge_keys_with_positions() -> None:
    doc = load_yaml_text(
        "base: &b {x: 1, y: 2}\n"
        "more: &m {z: 3}\n"
        "c:\n"
        "  <<: [*b, *m]\n"
        "  y: 20\n"
        "d: *b\n",
        "x.yaml",
    )
    assert doc.data["c"] == {"y": 20, "x": 1, "z": 3}
    assert doc.data["d"] == {"x": 1, "y": 2}
    assert str(doc.location(("c", "y"))) == "x.yaml:5:3"
    assert str(doc.location(("c", "x"))) == "x.yaml:1:11"  # merged: where the value was written


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("a: !!python/object:os.system {}\n", "'!!python/object:os.system' is not allowed", 1),
        ("a: !!python/name:os.system\n", "'!!python/name:os.system' is not allowed", 1),
        ("a:\n  - !!set {x}\n", "'!!set' is not allowed", 2),
        ("a: !!omap [{x: 1}]\n", "'!!omap' is not allowed", 1),
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 3),
        ("a: [1, 2\n", "YAML syntax error", 2),
        ("a: *nowhere\n", "undefined alias", 1),
        ("", "file is empty", 1),
        ("# only a comment\n", "file is empty", 1),
    ],
)
def test_loader_refuses_unsafe_or_broken_yaml(text: str, message: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml_text(text, "x.yaml")
    err = info.value
    assert message in err.message
    assert err.location is not None and err.location.path == "x.yaml" and err.location.line == line


def test_python_tags_are_never_constructed(tmp_path: pytest.TempPathFactory) -> None:
    marker = f"{tmp_path}/constructed"
    text = f"a: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecError):
        load_yaml_text(text, "x.yaml")
    import os

    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    ("api_key", "refused"),
    [("${OPENAI_API_KEY}", False), ("${A:-}", False), (" ${A}${B} ", False), ("", False),
     ("sk-live-123", True), ("Bearer ${TOKEN}", True), ("${A}sk-tail", True)],
)
def test_api_keys_must_be_environment_references(api_key: str, refused: bool) -> None:
    text = FULL.replace('api_key: "${OPENAI_API_KEY}"', f"api_key: {api_key!r}")
    if refused:
        with pytest.raises(SpecError, match="api_key holds a literal value") as info:
            load_graph_text(text, "full.yaml")
        assert info.value.field == "models.judge.api_key" and info.value.location is not None
        assert info.value.location.line == 11
        assert api_key.strip() not in str(info.value)  # the error does not echo the secret
    else:
        load_graph_text(text, "full.yaml")


@pytest.mark.parametrize("value", ["12345678901234", "'${sk-abcdef123456}'", "[sk-abcdef123456]"])
def test_errors_about_secret_fields_do_not_echo_the_value(value: str) -> None:
    text = FULL.replace('api_key: "${OPENAI_API_KEY}"', f"api_key: {value}")
    with pytest.raises(SpecError) as info:
        load_graph_text(text, "full.yaml")
    assert info.value.field is not None and info.value.field.startswith("models.judge.api_key")
    for secret in ("12345678901234", "abcdef123456"):
        assert secret not in str(info.value)
