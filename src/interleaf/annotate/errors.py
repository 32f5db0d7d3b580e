"""Errors of the human-review round trip; each is bad input or configuration (exit code 2).

Every one of them is raised before anything in the run is written, so a failed ``push``,
``pull`` or ``apply`` leaves the run as it was.
"""

from __future__ import annotations

from interleaf.errors import InterleafError


class AnnotateError(InterleafError):
    """Base of the ``interleaf annotate`` errors."""


class LabelStudioError(AnnotateError):
    """Label Studio could not be reached, or answered a request with an error."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio refused the token in ``LABEL_STUDIO_API_KEY`` (or none was set)."""


class LabelConfigMismatch(AnnotateError):
    """A project's labeling interface is not the one interleaf made from the run's rubrics
    (edited by hand in Label Studio, or made from other rubrics)."""


class VanishedItemsError(AnnotateError):
    """Annotated tasks refer to tree nodes, dialogues or pairs the run no longer has (or whose
    content changed since the push)."""


class AnnotationValueError(AnnotateError):
    """An annotation holds a value the rubric does not allow, or a field interleaf did not make."""


class ReviewSetupError(AnnotateError):
    """The run's graph does not say which rubrics to review with, or how to re-prune and re-pair."""
