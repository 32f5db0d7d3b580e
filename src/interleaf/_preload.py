"""Work every worker process would otherwise do again, done once in the fork server.

The fork server of :mod:`interleaf.processes` imports this module (after the modules of its
preload list); the workers forked from it inherit the result. Without it, a worker's first
graph and first model call cost ~0.15 s of CPU on top of the seed's own: importing the node
and tool kinds and the storage and YAML libraries, scanning the installed packages for plugin
entry points, and building the pydantic validators litellm and the OpenAI SDK defer to their
first use. That start is paid by every worker of every batch, while the first requests wait.

Only imports and computation happen here: no thread starts (it would be copied half-alive
into every worker), nothing is sent, and no plugin's code runs (plugins still load in the
worker, when a graph names them).
"""

from __future__ import annotations

import importlib
import logging

import fsspec.implementations.local  # noqa: F401  (ObjectStore's local filesystem)
import ruamel.yaml  # noqa: F401  (graph files)

from interleaf.nodes.registry import node_kinds
from interleaf.registry import plugin_entry_points
from interleaf.tools.base import tool_kinds

log = logging.getLogger(__name__)

#: Pydantic models whose validators litellm and the OpenAI SDK build on first use (a chat
#: completion's request params, response and usage). A name a later version lacks is skipped.
LAZY_MODELS: tuple[tuple[str, str], ...] = (
    ("litellm.types.router", "GenericLiteLLMParams"),
    ("litellm.types.router", "LiteLLM_Params"),
    ("litellm.types.services", "ServiceLoggerPayload"),
    ("litellm.types.utils", "Message"),
    ("litellm.types.utils", "Choices"),
    ("litellm.types.utils", "Usage"),
    ("litellm.types.utils", "ModelResponse"),
    ("openai.types.chat.chat_completion_message", "ChatCompletionMessage"),
    ("openai.types.chat.chat_completion", "Choice"),
    ("openai.types.chat.chat_completion", "ChatCompletion"),
)


def complete_lazy_models() -> None:
    """Build the validators of :data:`LAZY_MODELS` now (those not built yet)."""
    for module_name, name in LAZY_MODELS:
        try:
            model = getattr(importlib.import_module(module_name), name)
            if not getattr(model, "__pydantic_complete__", True):
                model.model_rebuild()
        except Exception as exc:  # only a head start: the first call builds it as it always did
            log.debug("could not build %s.%s ahead: %s", module_name, name, exc)


def _warm() -> None:
    for registry in (node_kinds, tool_kinds):
        for module in registry.builtin_modules:
            importlib.import_module(module)
    plugin_entry_points(node_kinds.group)  # one scan serves every registry
    complete_lazy_models()


_warm()
