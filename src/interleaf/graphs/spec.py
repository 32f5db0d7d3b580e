"""The YAML graph schema: models, tools, nodes, edges and defaults.

String values may reference environment variables as ``${NAME}`` or
``${NAME:-default}``. They are kept verbatim in the spec and resolved only when
a value is used (see :func:`resolve_env`), so secrets never get written back out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

START = "START"
END = "END"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def resolve_env(value: str, environ: dict[str, str] | None = None) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}`` references; unset without default -> ``KeyError``."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_REF.sub(sub, value)


def env_refs(value: str) -> list[str]:
    """Names of the environment variables ``value`` references."""
    return [m.group(1) for m in _ENV_REF.finditer(value)]


def without_env_refs(value: str) -> str:
    """``value`` with every ``${...}`` reference removed (what would be literal text)."""
    return _ENV_REF.sub("", value)


def env_ref_problem(value: str) -> str | None:
    """Why a ``${...}`` in ``value`` is not a valid reference, or None when all are valid."""
    start = value.find("${")
    while start != -1:
        m = _ENV_REF.match(value, start)
        if m is None:
            end = value.find("}", start)
            shown = value[start : end + 1] if end != -1 else value[start : start + 30]
            if end == -1:
                return f"unclosed environment reference {shown!r}: write ${{NAME}} or ${{NAME:-default}}"
            return (
                f"bad environment reference {shown!r}: write ${{NAME}} or ${{NAME:-default}} "
                "(NAME: letters, digits and '_', not starting with a digit)"
            )
        start = value.find("${", m.end())
    return None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(_Spec):
    """A named MLLM endpoint reached through litellm."""

    model: str = Field(description="litellm model string, e.g. openai/gpt-4o or hosted_vllm/qwen.")
    api_base: str | None = None
    api_key: str | None = Field(
        default=None,
        description="An environment reference such as ${OPENAI_API_KEY}, resolved per call; a literal key is "
        "refused by the compiler so it is never written out with the graph.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Completion params (temperature, ...).")
    max_concurrency: int = Field(
        default=16, ge=1, le=10_000,
        description="Requests in flight to this model at once (a total: split across the processes of a run).",
    )
    rpm: float | None = Field(
        default=None, gt=0,
        description="Requests per minute this model may be sent (the provider's rate limit; a total across "
        "the processes of a run). Unset: no request rate limit.",
    )
    tpm: float | None = Field(
        default=None, gt=0,
        description="Tokens per minute (prompt + completion) where the provider states one; a total like rpm.",
    )
    timeout: float = Field(
        default=120.0, gt=0,
        description="Seconds one request may take (each attempt). 120 s fits long multimodal answers; lower it "
        "for fast endpoints so a hanging one is found sooner.",
    )
    max_retries: int = Field(default=3, ge=0, le=20, description="Retries after the first attempt.")
    stop_after_failures: int = Field(
        default=5, ge=1, le=10_000,
        description="Stop the run (resumable) after this many systemic failures in a row at this model's "
        "endpoint: refused or unreachable, timed-out requests, 401/402/403, 404, an unset key variable, or a "
        "call that gave up on 5xx. Any answer resets the count; failures of one request's content (400, a "
        "broken answer) never count.",
    )
    cache: bool = False
    image_transport: Literal["data_url", "url", "auto"] = "data_url"
    max_image_side: int = Field(default=1024, ge=16, le=8192)
    concurrency_key: str | None = Field(
        default=None, description="Name of a shared (Prefect) concurrency limit for this endpoint."
    )


class ToolSpec(BaseModel):
    """A named tool; ``kind`` picks the registered implementation, other keys are its params."""

    model_config = ConfigDict(extra="allow")

    kind: str | None = None

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RetrySpec(_Spec):
    """A node's LangGraph ``RetryPolicy``.

    ``retry_on: transient`` keeps LangGraph's default (network and server errors, not bugs
    such as ``ValueError``); ``any`` retries every exception.
    """

    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts in all, including the first.")
    initial_interval: float = Field(default=0.5, ge=0, le=3600)
    backoff_factor: float = Field(default=2.0, ge=1, le=100)
    max_interval: float = Field(default=30.0, ge=0, le=3600)
    jitter: bool = True
    retry_on: Literal["transient", "any"] = "transient"


class NodeSpec(_Spec):
    kind: str = Field(description="Registered node kind name or 'module:attr' import path.")
    model: str | None = None
    models: list[str] | None = None
    tools: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec | None = None

    @model_validator(mode="after")
    def _one_model_form(self) -> NodeSpec:
        if self.model is not None and self.models is not None:
            raise ValueError("give either 'model' or 'models', not both")
        return self

    def model_names(self) -> list[str]:
        if self.models is not None:
            return list(self.models)
        return [self.model] if self.model is not None else []


class EdgeSpec(_Spec):
    """One edge. Exactly one form:

    - plain: ``{from: a, to: b}``
    - fan-out: ``{from: a, fan_out: tasks, to: b, empty: c}`` - one ``Send`` per item of the
      state list ``tasks``; when it is empty, go to ``empty`` (default END)
    - conditional: ``{from: a, if: predicate, args: {...}, then: b, else: c}``
    """

    source: str = Field(alias="from")
    to: str | None = None
    fan_out: str | None = None
    empty: str | None = None
    if_: str | None = Field(default=None, alias="if")
    args: dict[str, Any] = Field(default_factory=dict)
    then: str | None = None
    else_: str | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> EdgeSpec:
        if self.if_ is not None:
            if self.then is None or self.else_ is None:
                raise ValueError("a conditional edge needs both 'then' and 'else'")
            if self.to is not None or self.fan_out is not None:
                raise ValueError("a conditional edge takes 'then'/'else', not 'to'/'fan_out'")
        else:
            if self.then is not None or self.else_ is not None or self.args:
                raise ValueError("'then', 'else' and 'args' belong to a conditional edge with 'if'")
            if self.to is None:
                raise ValueError("an edge needs 'to' (or 'if' with 'then'/'else')")
        if self.empty is not None and self.fan_out is None:
            raise ValueError("'empty' belongs to a fan_out edge")
        return self

    def targets(self) -> list[str]:
        if self.if_ is not None:
            return [t for t in (self.then, self.else_) if t is not None]
        out = [self.to] if self.to is not None else []
        if self.fan_out is not None:
            out.append(self.empty or END)
        return out


class ReportSpec(_Spec):
    """A run-level report written after the run from its dialogues; ``kind`` picks a registered
    report kind (see :mod:`interleaf.datasets.reports`), ``params`` are that kind's options."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class Defaults(_Spec):
    run_seed: int = 0
    concurrency: int = Field(default=8, ge=1, le=100_000, description=(
        "Dialogues in flight (a total: split across the processes of a run); leave room above the "
        "models' max_concurrency so a freed request slot finds a dialogue ready to send."))
    recursion_limit: int = Field(default=1000, ge=10)
    store: str | None = None


class GraphSpec(_Spec):
    """A whole graph file."""

    name: str
    description: str = ""
    version: int = 1
    defaults: Defaults = Field(default_factory=Defaults)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec]
    # Reports only read a finished run, so they stay out of dumps and the run's graph fingerprint:
    # adding a report to a graph does not make its existing runs a different run.
    reports: dict[str, ReportSpec] = Field(
        default_factory=dict, exclude=True,
        description="Report name -> report written into the run's reports/ folder.",
    )

    @field_validator("models", "tools", "nodes", "reports")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            # LangGraph reserves __start__/__end__; START/END are this schema's own markers.
            if not _NAME.match(name) or name in (START, END) or (name.startswith("__") and name.endswith("__")):
                raise ValueError(
                    f"invalid name {name!r}: use letters, digits, '_' or '-' (not START, END or __x__)"
                )
        return value

    @field_validator("nodes")
    @classmethod
    def _some_nodes(cls, value: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        if not value:
            raise ValueError("a graph needs at least one node")
        return value


def graph_fingerprint(spec: GraphSpec) -> str:
    """SHA-256 of the spec's canonical JSON: equal for the same graph however the YAML is laid out."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
