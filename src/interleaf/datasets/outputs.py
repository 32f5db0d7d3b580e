"""Where exports, views and imports write: output folders checked first, files replaced safely.

Every writer of :mod:`interleaf.datasets` goes through this module, so a bad ``--out`` fails
the same way everywhere: one :class:`OutputError` (the CLI's exit code 2) whose message names
the path and the operating system's reason, before or while anything is written, and never
with a half-written file left where a good one was.

- :func:`prepare_out_dir` creates the folder and proves it writable (a probe file is
  created, written, synced and removed), so a read-only folder, a file in the way or a full
  disk is reported before any work is done.
- :func:`writing` yields a temporary path beside the target and renames it over the target
  only when the block finished: an old file stays whole until the new one is complete.
- :func:`staging` does the same for a whole tree of files (a ``datasets.save_to_disk``
  folder): it is written into a temporary folder inside ``out`` and moved into place file by
  file when complete; on failure the temporary folder is removed and ``out`` is unchanged.

Example:
    >>> import tempfile
    >>> out = prepare_out_dir(Path(tempfile.mkdtemp()) / "export")
    >>> write_text(out / "hello.txt", "hi\\n")
    >>> (out / "hello.txt").read_text()
    'hi\\n'
    >>> prepare_out_dir(out / "hello.txt" / "below")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    interleaf.datasets.outputs.OutputError: cannot write to .../hello.txt/below: ...
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from interleaf.errors import InterleafError

#: Prefix of the temporary files and folders this module creates (and removes) inside ``out``.
TEMP_PREFIX = ".interleaf-tmp-"

_HINTS = {
    errno.ENOSPC: "the disk or quota is full; free space or choose another output folder",
    getattr(errno, "EDQUOT", -1): "the disk quota is exhausted; free space or choose another output folder",
    errno.EFBIG: "the file size limit was reached; raise the limit or choose another output folder",
    errno.EACCES: "this user may not write there; fix its permissions or choose another output folder",
    errno.EPERM: "this user may not write there; fix its permissions or choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.ENOTDIR: "a regular file is in the way of a folder on that path; choose another output folder",
    errno.EEXIST: "a regular file is in the way of a folder on that path; choose another output folder",
}


class OutputError(InterleafError):
    """An output location cannot be written: the path, the operating system's reason, a hint.

    ``path`` is the file or folder that failed, ``reason`` the OS's words (``strerror``) and
    ``errno`` its code (None when the problem was found without an OS error).

    >>> str(OutputError("/data/out", "No space left on device", errno.ENOSPC))  # doctest: +ELLIPSIS
    'cannot write to /data/out: No space left on device (ENOSPC); the disk or quota is full; ...'
    """

    def __init__(self, path: str | Path, reason: str, errno_: int | None = None, *, note: str = ""):
        self.path = str(path)
        self.reason = reason
        self.errno = errno_
        code = f" ({errno.errorcode.get(errno_, errno_)})" if errno_ is not None else ""
        hint = _HINTS.get(errno_, "") if errno_ is not None else ""
        tail = "".join(f"; {t}" for t in (hint, note) if t)
        super().__init__(f"cannot write to {self.path}: {reason}{code}{tail}")

    @classmethod
    def from_os(cls, path: str | Path, exc: OSError, *, note: str = "") -> OutputError:
        """The error for ``exc`` raised while writing ``path``.

        The path the OS names wins (a parent folder that could not be made is the news), unless
        it is one of this module's temporary files, which the user never asked for.
        """
        named = exc.filename if isinstance(exc.filename, str) else ""
        where = named if named and TEMP_PREFIX not in named else str(path)
        return cls(where, exc.strerror or str(exc), exc.errno, note=note)


_KEPT = "files already there were left as they were"


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` (and its parents) and prove it writable; returns its absolute path.

    Raises :class:`OutputError` when ``out`` or one of its parents is a file, when the folder
    is not writable (the probe file cannot be created) or when the disk is full (the probe's
    one byte cannot be written and synced). The probe is removed again.
    """
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is not a folder", errno.ENOTDIR)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file (ENOTDIR), a read-only parent (EACCES), ...
        raise OutputError.from_os(out, exc) from None
    probe = out / f"{TEMP_PREFIX}probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError.from_os(out, exc, note=_KEPT) from None
    finally:
        with suppress(OSError):
            probe.unlink()
    return out


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Any ``OSError`` inside the block (or while renaming) becomes :class:`OutputError` naming
    ``path``; the temporary file is removed and an existing ``path`` is left untouched.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.json"
    >>> with writing(target) as tmp:
    ...     _ = tmp.write_text("[]")
    >>> target.read_text()
    '[]'
    """
    path = Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and _is_write_error(exc):
            raise OutputError.from_os(path, exc, note=_KEPT) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`writing` (synced, then renamed into place)."""
    with writing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`writing`."""
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def staging(out: Path, *, replace: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder inside ``out``; on success move its files into ``out``.

    Files are moved one by one with ``os.replace``; folders are merged (files of ``out`` that
    the staged tree does not have are kept), except the top-level folders named in
    ``replace``, which are swapped whole (a dataset folder must not keep an old shard). On
    any error before the move the temporary folder is removed and ``out`` is as it was; an
    ``OSError`` becomes :class:`OutputError`.
    """
    out = Path(out)
    try:
        stage = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out))
    except OSError as exc:
        raise OutputError.from_os(out, exc, note=_KEPT) from None
    try:
        yield stage
        for name in replace:
            _swap(stage / name, out / name)
        _merge(stage, out)
    except OSError as exc:
        if not _is_write_error(exc):
            raise
        raise OutputError.from_os(out, exc, note=_KEPT) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _is_write_error(exc: BaseException) -> bool:
    # A store that could not be *read* (StoreUnavailableError is an OSError too) is the run's
    # problem, not the output's: it keeps its own message.
    return isinstance(exc, OSError) and not isinstance(exc, InterleafError)


def _swap(new: Path, old: Path) -> None:
    """Put folder ``new`` where ``old`` is, removing ``old`` only once ``new`` is in place."""
    if not new.is_dir():
        return
    if old.is_dir() and not old.is_symlink():
        aside = old.with_name(f"{TEMP_PREFIX}old-{uuid.uuid4().hex}-{old.name}")
        os.replace(old, aside)
        try:
            os.replace(new, old)
        except OSError:
            os.replace(aside, old)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        if old.exists() or old.is_symlink():
            old.unlink()
        os.replace(new, old)


def _merge(src: Path, dst: Path) -> None:
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.exists() and not target.is_dir():
                target.unlink()  # a file where the new export has a folder: the folder wins
            target.mkdir(exist_ok=True)
            _merge(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
