"""Errors users see. Each names the place (file, line, column or field) it is about."""

from __future__ import annotations


class InterleafError(Exception):
    """Base of the errors the CLI reports as a one-paragraph message with exit code 2."""


class Location:
    """A place in an input file: ``path:line:column`` (1-based), any part optional."""

    __slots__ = ("column", "line", "path")

    def __init__(self, path: str | None, line: int | None = None, column: int | None = None):
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        out = self.path or "<input>"
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        return out

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"


class LocatedError(InterleafError):
    """An error tied to a place in an input file."""

    def __init__(self, message: str, location: Location | None = None, field: str | None = None):
        self.message = message
        self.location = location
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.location) if self.location is not None else "<input>"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"


class SpecError(LocatedError):
    """A graph or rubric YAML file is malformed or its wiring is wrong."""


class SeedError(LocatedError):
    """A seed file is malformed."""


class RunMismatchError(InterleafError):
    """An existing run directory belongs to a different graph or seed set."""


class StoreKeyError(InterleafError, ValueError):
    """An object-store key would escape the store prefix or is otherwise unsafe."""


class SystemicFailure(InterleafError):
    """An endpoint keeps failing in a way no retry of one request fixes (down, bad key, unknown
    model, timing out): the run stops instead of failing every seed, and can be resumed.

    Node kinds must let it propagate (never catch it as an ordinary branch failure).
    """

    def __init__(self, model: str, endpoint: str, error: str, failures: int):
        self.model = model
        self.endpoint = endpoint
        self.error = error
        self.failures = failures
        super().__init__(
            f"model {model!r} at {endpoint} failed {failures} times in a row; last error: {error}"
        )


class PreflightError(InterleafError):
    """A check before the run (credentials, endpoints, image tools) failed; no seed was started."""


class ServiceUnavailableError(InterleafError):
    """A service the run needs (the Prefect API, say) could not be reached; nothing was lost (exit 3)."""
