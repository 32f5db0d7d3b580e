"""Human review, round trip: a run's trees to Label Studio, people's scores back, pruning and pairs by them.

- :func:`push` - one Label Studio task per tree node, dialogue or candidate pair, in a project
  whose labeling interface is generated from the run's rubrics;
- :func:`pull` - submitted annotations back as :class:`~interleaf.state.HumanScore` records
  (idempotent; the judge's scores untouched), plus the agreement report in ``reports/``;
- :func:`apply` - pruning and pairs decided again with people's scores taking precedence
  (``prefer: human|judge``), without calling any model;
- :func:`agreement_report` - agreement between annotators (exact, Cohen's kappa) and between the
  judge and people (agreement, Pearson, pair accuracy).

Names load on first use, so mounting the CLI sub-app (:data:`annotate_app` in
``interleaf.annotate.cli``) costs nothing until a command runs.

Example::

    from interleaf import annotate
    annotate.push("runs/demo", url="http://127.0.0.1:8080", what="turns")   # LABEL_STUDIO_API_KEY set
    # ... people annotate in Label Studio ...
    print(annotate.pull("runs/demo", url="http://127.0.0.1:8080").summary())
    print(annotate.apply("runs/demo").summary())
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "push": "interleaf.annotate.push",
    "PushResult": "interleaf.annotate.push",
    "pull": "interleaf.annotate.pull",
    "PullResult": "interleaf.annotate.pull",
    "apply": "interleaf.annotate.apply",
    "ApplyResult": "interleaf.annotate.apply",
    "reprune": "interleaf.annotate.apply",
    "apply_to_state": "interleaf.annotate.apply",
    "agreement_report": "interleaf.annotate.agreement",
    "AgreementReport": "interleaf.annotate.agreement",
    "cohen_kappa": "interleaf.annotate.agreement",
    "label_config": "interleaf.annotate.config",
    "review_items": "interleaf.annotate.items",
    "ReviewSetup": "interleaf.annotate.setup",
    "load_review_setup": "interleaf.annotate.setup",
    "LabelStudio": "interleaf.annotate.client",
    "AnnotateError": "interleaf.annotate.errors",
    "LabelStudioError": "interleaf.annotate.errors",
    "LabelStudioAuthError": "interleaf.annotate.errors",
    "LabelConfigMismatch": "interleaf.annotate.errors",
    "VanishedItemsError": "interleaf.annotate.errors",
    "AnnotationValueError": "interleaf.annotate.errors",
    "ReviewSetupError": "interleaf.annotate.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interleaf.annotate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
