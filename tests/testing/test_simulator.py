"""The simulator over raw HTTP (no litellm), as any OpenAI-compatible client sees it."""

import json

import httpx
import pytest

from interleaf.models.judge_format import DimensionScale, format_instructions, parse_judge_output
from interleaf.models.markers import parse_markers
from interleaf.testing.simulator import SITUATIONS, Rule, SimAnswer, Simulator


def _post(sim: Simulator, model: str, messages: list[dict], **extra) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/chat/completions", json={"model": model, "messages": messages, **extra},
                      timeout=10)


def test_assistant_answers_are_deterministic_with_markers_and_usage(sim: Simulator) -> None:
    msgs = [{"role": "user", "content": "Explain how a volcano erupts"}]
    texts = set()
    for seed in range(12):
        first = _post(sim, "assistant", msgs, seed=seed).json()
        again = _post(sim, "assistant", msgs, seed=seed).json()
        assert first == again
        assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
        text = first["choices"][0]["message"]["content"]
        assert len(parse_markers(text)) <= 2
        texts.add(text)
    assert any(parse_markers(t) for t in texts) and len(texts) > 3
    assert sim.requests == 24 and sim.peak_concurrency == 1


def test_judge_scores_every_dimension_in_range(sim: Simulator) -> None:
    dims = [DimensionScale("helpfulness", 1, 5), DimensionScale("image_text_consistency", 0, 3)]
    prompt = "Judge this answer.\n" + format_instructions(dims)
    text = _post(sim, "my-judge", [{"role": "user", "content": prompt}]).json()["choices"][0]["message"]["content"]
    parsed = parse_judge_output(text, dims)
    assert parsed.complete and set(parsed.scores) == {"helpfulness", "image_text_consistency"}


def test_expansion_and_follow_up_roles(sim: Simulator) -> None:
    exp = _post(sim, "expand", [{"role": "user", "content": "cats in space"}]).json()["choices"][0]["message"]
    situation = exp["content"].splitlines()[-1]
    assert situation.startswith("SITUATION: ") and situation.removeprefix("SITUATION: ") in SITUATIONS
    offered = _post(sim, "expand", [{"role": "user", "content": "cats\nSITUATIONS: alpha | beta"}]).json()
    assert offered["choices"][0]["message"]["content"].splitlines()[-1] in ("SITUATION: alpha", "SITUATION: beta")
    follow = _post(sim, "user-sim", [{"role": "user", "content": "a story about a fox"}]).json()
    assert follow["choices"][0]["message"]["content"].strip().endswith("?")


def test_tool_role_calls_offered_tools_then_answers(sim: Simulator) -> None:
    tools = [{"type": "function", "function": {"name": "paint", "parameters": {
        "type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}}]
    msgs = [{"role": "user", "content": "paint a tree"}]
    first = _post(sim, "tool", msgs, tools=tools).json()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    call = first["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["prompt"]
    msgs += [first["message"], {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(
        {"placeholder": "[image 1]"})}]
    final = _post(sim, "tool", msgs, tools=tools).json()["choices"][0]
    assert "[image 1]" in final["message"]["content"] and not final["message"].get("tool_calls")
    broken = _post(sim, "malformed", msgs[:1], tools=tools).json()["choices"][0]["message"]["tool_calls"][0]
    with pytest.raises(ValueError):
        json.loads(broken["function"]["arguments"])


def test_faults_and_custom_rules(sim: Simulator) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    sim.configure(fault_rate=1.0, faults=["429"])
    assert _post(sim, "assistant", msgs).status_code == 429
    sim.configure(faults=["500"])
    assert _post(sim, "assistant", msgs).status_code == 500
    sim.configure(faults=["malformed_json"])
    with pytest.raises(ValueError):
        _post(sim, "assistant", msgs).json()
    sim.configure(faults=["truncated_stream"])
    with pytest.raises(httpx.HTTPError):
        _post(sim, "assistant", msgs)
    sim.configure(fault_rate=0.0)
    sim.add_rule(Rule(model="scripted", reply=lambda req: SimAnswer(content=f"echo {req.last_user_text}")))
    assert _post(sim, "my-scripted-model", msgs).json()["choices"][0]["message"]["content"] == "echo hi"
    assert sim.faults_injected == {"429": 1, "500": 1, "malformed_json": 1, "truncated_stream": 1}
    with pytest.raises(ValueError):
        sim.configure(faults=["teapot"])


def test_streaming_answer(sim: Simulator) -> None:
    msgs = [{"role": "user", "content": "Explain rainbows"}]
    whole = _post(sim, "assistant", msgs).json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{sim.base_url}/chat/completions",
                      json={"model": "assistant", "messages": msgs, "stream": True}, timeout=10) as resp:
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content", "") for ln in lines[:-1])
    assert text == whole


def test_defect_rates_and_judge_noise_are_options_of_the_server() -> None:
    from interleaf.datasets.sim_truth import DEFAULT_DEFECT_RATES, DEFECT_KINDS, canonical_markup, read_answer

    msgs = [{"role": "system", "content": "Answer with <Image, a caption> markers."},
            {"role": "user", "content": "Draw a lighthouse at night."}]
    with Simulator(seed=1) as own:
        assert own.defect_rates == DEFAULT_DEFECT_RATES and own.judge_noise == 0.0
        own.configure(defect_rates={"truncated": 1.0})
        assert own.defect_rates == {**dict.fromkeys(DEFECT_KINDS, 0.0), "truncated": 1.0}
        cut = _post(own, "assistant", msgs).json()["choices"][0]
        # A truncated answer looks like one cut at the token limit.
        assert cut["finish_reason"] == "length"
        assert read_answer(canonical_markup(cut["message"]["content"])).defects == {"truncated"}  # type: ignore[union-attr]
        own.configure(defect_rates={})
        clean = _post(own, "assistant", msgs).json()["choices"][0]
        assert clean["finish_reason"] == "stop" and clean["message"]["content"].endswith((".", "?"))
        assert read_answer(canonical_markup(clean["message"]["content"])).defects == frozenset()  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="unknown defect kinds"):
            own.configure(defect_rates={"blurry": 0.5})
        with pytest.raises(ValueError, match="judge_noise"):
            own.configure(judge_noise=1.5)
    assert Simulator(defect_rates={"off_topic": 0.5}, judge_noise=0.2).options().judge_noise == 0.2


def test_answers_name_the_subject_and_markers_follow_what_the_text_announces(sim: Simulator) -> None:
    msgs = [{"role": "user", "content": "Design a simple logo for a bakery called Morning Crumb."}]
    for seed in range(6):
        text = _post(sim, "assistant", msgs, seed=seed).json()["choices"][0]["message"]["content"]
        assert "logo" in text and "Morning Crumb" in text
        for marker in parse_markers(text):
            assert text[:marker.start].rstrip().endswith(":")
