"""The report-kind contract: what a graph's ``reports:`` entries name, and checking them.

A report kind is a :class:`ReportKind` subclass with a typed ``Params`` model, registered in
:data:`report_kinds` (built-ins in :mod:`interleaf.datasets.reports` and :mod:`interleaf.bench.report`;
others through the entry-point group ``interleaf.reports``). :func:`check_reports` validates a graph's reports
when it is compiled, so a typo is found before any model is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ValidationError

from interleaf.errors import SpecError
from interleaf.graphs.loading import located_validation_error
from interleaf.graphs.spec import GraphSpec, ReportSpec
from interleaf.graphs.yamlsource import YamlDocument
from interleaf.registry import Registry
from interleaf.state import DialogueState


@dataclass
class ReportFile:
    """One file a report writes: a name relative to ``reports/`` and its bytes."""

    name: str
    data: bytes


@dataclass
class ReportOutput:
    """What building a report produced: files and the markdown section for the index."""

    files: list[ReportFile] = field(default_factory=list)
    markdown: str = ""


class ReportKind:
    """Base of report kinds: ``Params`` validates the YAML ``params``; :meth:`build` makes the files."""

    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, name: str, params: BaseModel):
        self.name = name
        self.params = params

    def check(self, base_dir: Path | None) -> None:
        """Checks beyond the params' schema (say, a dimension against a rubric); raise :class:`SpecError`
        with ``field`` set to the offending ``params.<...>`` path."""

    def build(self, dialogues: Iterable[DialogueState]) -> ReportOutput:  # pragma: no cover - abstract
        raise NotImplementedError


report_kinds: Registry[type[ReportKind]] = Registry(
    "report kind", "interleaf.reports", ("interleaf.datasets.reports", "interleaf.bench.report")
)


def make_report(name: str, spec: ReportSpec) -> ReportKind:
    """Instantiate a report from its spec; raises ``LookupError`` or ``ValidationError``."""
    kind = report_kinds.get(spec.kind)
    if not (isinstance(kind, type) and issubclass(kind, ReportKind)):
        raise LookupError(f"{spec.kind!r} is not a report kind (a ReportKind subclass)")
    return kind(name, kind.Params.model_validate(spec.params))


def check_reports(spec: GraphSpec, doc: YamlDocument, *, rubrics: bool = True) -> None:
    """Validate a graph's ``reports``; every problem is a :class:`SpecError` at its YAML line.

    ``rubrics=False`` checks kinds and params only: a run's stored copy of the graph lives away
    from the folder its relative rubric paths point into.
    """
    base_dir = Path(doc.path).parent
    for name, rspec in spec.reports.items():
        where = ("reports", name)
        try:
            report = make_report(name, rspec)
            if rubrics:
                report.check(base_dir)
        except LookupError as exc:
            raise doc.error(str(exc), (*where, "kind")) from None
        except ValidationError as exc:
            params_model = report_kinds.get(rspec.kind).Params
            raise located_validation_error(doc, exc, params_model, (*where, "params")) from None
        except SpecError as exc:
            if exc.location is not None or not exc.field:
                raise
            path = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
            raise doc.error(f"report {name!r}: {exc.message}", (*where, *path)) from None
