"""Running the ``interleaf`` command for fault tests: in-process (fast) or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from interleaf.cli import app

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured streams of one ``interleaf`` invocation."""

    exit_code: int
    stdout: str
    stderr: str


def invoke(args: list[str]) -> CliResult:
    """Run ``interleaf ARGS`` in this process (the same code path as the console script)."""
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An escaped exception is what a user would see as a traceback.
        raise AssertionError(f"interleaf {' '.join(args)} raised {result.exception!r}") from result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus the repository on ``PYTHONPATH`` (test node kinds import from ``tests``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def interleaf_command(*args: str) -> list[str]:
    """The argv of ``python -m interleaf ARGS``."""
    return [sys.executable, "-m", "interleaf", *args]


def run_many(commands: list[list[str]], env: dict[str, str], timeout: float = 90.0) -> list[CliResult]:
    """Run ``interleaf`` subprocesses side by side (each pays the import cost once) and wait for all."""
    procs = [subprocess.Popen(interleaf_command(*args), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(CliResult(proc.returncode, out, err))
    return results


def assert_located_error(result: CliResult, *, path: str, line: int | None, field: str | None,
                         fragment: str) -> None:
    """Exit code 2 and one paragraph on stderr naming ``path`` (and ``line``, ``field``) and the problem."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    assert result.exit_code == 2, shown
    err = result.stderr.strip()
    assert err.startswith("error: "), shown
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, shown
    assert "\n\n" not in err, f"more than one paragraph:\n{err}"
    assert len(err) < 4000, f"an error paragraph of {len(err)} characters"
    place = f"{path}:{line}" if line is not None else path
    assert place in err, f"{place!r} not named in:\n{err}"
    # ``path[:line]`` is followed by ``:column``, `` [field]`` or ``:``, never more of a number or name.
    after = err[err.index(place) + len(place)]
    assert after in ": ", err
    if field is not None:
        assert f"[{field}" in err, f"field {field!r} not named in:\n{err}"
    assert fragment in err, f"{fragment!r} not in:\n{err}"
