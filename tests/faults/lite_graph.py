"""A small, cheap copy of the built-in ``intermt-lite`` graph whose models talk to the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from interleaf.graphs.loading import builtin_graphs

#: intermt-lite model name -> the simulator role (the model name the simulator routes on).
SIM_ROLES = {"expander": "expand", "assistant": "assistant", "judge": "judge", "user_sim": "user"}


def lite_graph_doc(
    base_url: str,
    *,
    api_key: str = "${OPENAI_API_KEY}",
    variants: int = 1,
    k: int = 2,
    max_turns: int = 2,
    timeout: float = 2.0,
    max_retries: int = 3,
    concurrency: int = 4,
) -> dict[str, Any]:
    """The intermt-lite graph as a dict, shrunk and with every model pointed at ``base_url``."""
    doc: dict[str, Any] = yaml.safe_load(builtin_graphs()["intermt-lite"].read_text(encoding="utf-8"))
    doc["name"] = "intermt-lite-faults"
    for name, spec in doc["models"].items():
        spec.update(model=f"openai/{SIM_ROLES[name]}", api_base=base_url, api_key=api_key,
                    timeout=timeout, max_retries=max_retries)
    doc["defaults"]["concurrency"] = concurrency
    doc["nodes"]["expand"]["params"]["variants"] = variants
    doc["nodes"]["plan"]["params"]["k"] = k
    for edge in doc["edges"]:
        if edge.get("if") == "more_turns":
            edge["args"]["max_turns"] = max_turns
    return doc


def write_lite_graph(path: Path, base_url: str, **options: Any) -> Path:
    """Write :func:`lite_graph_doc` to ``path`` (as JSON, which is YAML) and return the path."""
    path.write_text(json.dumps(lite_graph_doc(base_url, **options), indent=2), encoding="utf-8")
    return path


def write_seeds(path: Path, n: int, prefix: str = "s") -> Path:
    """``n`` plain text seeds, one JSON object a line."""
    topics = ["a lighthouse at dusk", "how bees make honey", "a bicycle repair", "the water cycle",
              "a mountain village", "baking sourdough bread", "a city at night", "tide pools"]
    lines = [json.dumps({"id": f"{prefix}{i:03d}", "prompt": f"Tell me about {topics[i % len(topics)]} ({i})."})
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
