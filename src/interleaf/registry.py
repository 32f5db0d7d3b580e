"""Named registries for node kinds, tools and edge predicates.

Built-ins register on import; other packages add entries through the entry-point
groups ``interleaf.nodes``, ``interleaf.tools`` and ``interleaf.predicates``.
Anything can also be named by import path ``package.module:attr``, as long as that module is
*installed*: a graph is data, and validating or running one must never execute a file that
merely lies in the current folder or beside the graph (an ``evil.py`` next to a downloaded
graph). So :func:`import_object` resolves with :mod:`importlib` only (it never adds a folder
to ``sys.path``), and refuses a module found inside the current working directory, or a
folder given to :func:`untrusted_dirs`, unless it is installed: in a site-packages folder or
one a ``.pth`` file adds (``pip install``, ``pip install -e`` of a plugin), in the
interpreter's own tree, in a folder named in ``PYTHONPATH`` (an explicit choice, unlike the
working directory that ``python -m`` puts first on ``sys.path``), or part of a package the
program has already imported. The check runs before any of the module's code.

Example:
    >>> import_object("interleaf.registry:Registry").__name__
    'Registry'
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import os
import re
import site
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib.machinery import ModuleSpec
from importlib.metadata import EntryPoint, entry_points, packages_distributions
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")

_untrusted: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("interleaf_untrusted_dirs", default=())


@contextmanager
def untrusted_dirs(*dirs: str | Path) -> Iterator[None]:
    """Also refuse modules found under ``dirs`` (besides the working directory) in this context.

    The CLI wraps graph compilation in it with the graph file's folder::

        with untrusted_dirs(graph_path.parent):
            compile_graph(spec, doc)
    """
    token = _untrusted.set((*_untrusted.get(), *(os.path.realpath(d) for d in dirs)))
    try:
        yield
    finally:
        _untrusted.reset(token)


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted); any failure is a ``LookupError``.

    The module must be installed (see the module docstring); a module from the working
    directory or an untrusted folder is refused before any of its code runs.
    """
    if not _IMPORT_PATH.match(path):
        raise LookupError(f"{path!r} is not an import path of the form 'package.module:attr'")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = _import_module(module_name)
    except _Refused as exc:
        raise LookupError(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise LookupError(f"cannot import module {module_name!r}: {exc}; only installed modules are imported "
                          "(pip install -e your plugin, or use its registered name)") from None
    except Exception as exc:  # ImportError, or any error the module raises while importing
        raise LookupError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


class _Refused(Exception):
    pass


def _import_module(name: str) -> Any:
    """Import ``name`` one dotted level at a time, checking where each level comes from first.

    ``find_spec`` of a top-level name runs no module code; for ``a.b`` it imports ``a``,
    which was checked one step earlier.
    """
    parts = name.split(".")
    tree = _imported_tree(parts[0])
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in sys.modules:  # imported already (by the program, or by its checked parent)
            continue
        spec = importlib.util.find_spec(prefix)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {prefix!r}", name=prefix)
        locations = [os.path.realpath(p) for p in _locations(spec)]
        if tree is None or not locations or not all(_inside(p, tree) for p in locations):
            _check_origin(spec, parts[0])
        importlib.import_module(prefix)
    return sys.modules[name]


def _imported_tree(top: str) -> str | None:
    """The folder of ``top`` when the program has already imported it as a regular package.

    Its code already runs (pytest imported the test suite's ``tests`` package; interleaf
    imported itself), so more modules from that same folder add no new source of code. A
    namespace package (no ``__init__``, possibly spread over the working directory) gets no
    such pass.
    """
    module = sys.modules.get(top)
    init = getattr(module, "__file__", None)
    if module is None or not isinstance(init, str) or not hasattr(module, "__path__"):
        return None
    return os.path.dirname(os.path.realpath(init))


def _locations(spec: ModuleSpec) -> list[str]:
    if spec.origin and spec.has_location:
        return [spec.origin]
    return list(spec.submodule_search_locations or [])


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _check_origin(spec: ModuleSpec, top: str) -> None:
    roots = [os.path.realpath(os.getcwd()), *_untrusted.get()]
    for location in _locations(spec):
        real = os.path.realpath(location)
        for root in roots:
            if _inside(real, root) and not _installed(real, top):
                where = "the current folder" if root == roots[0] else "a graph's folder"
                raise _Refused(
                    f"module {spec.name!r} would be imported from {real}, inside {where} ({root}), and is not "
                    "part of an installed package; interleaf imports no code from the working directory or "
                    "a graph's folder. Install the plugin (pip install -e PATH, or a package with an "
                    "'interleaf.nodes' entry point) and name it again"
                )


@lru_cache(maxsize=1)
def _install_dirs() -> tuple[str, ...]:
    """Where installed code lives: site-packages folders and the folders their ``.pth`` files add.

    A ``pip install -e`` of a plugin (setuptools' legacy mode, hatchling, flit, pdm) is a
    ``.pth`` line naming the plugin's source folder; its modules count as installed.
    """
    sites = {p for p in (*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_path("purelib"),
                         sysconfig.get_path("platlib")) if p}
    # The interpreter's own trees (stdlib, a virtualenv) count too: a Python under ~/.pyenv or
    # a .venv inside the project is not "a file in the current folder".
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    dirs = {os.path.realpath(p) for p in sites | {p for p in prefixes if p}}
    for folder in sites:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pth"))
        except OSError:
            continue
        for pth in names:
            try:
                lines = Path(folder, pth).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    dirs.add(os.path.realpath(os.path.join(folder, line)))
    return tuple(sorted(dirs))


def _chosen_dirs() -> list[str]:
    """Folders the user put on the import path on purpose (``PYTHONPATH``); never the implicit cwd."""
    return [os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _installed(path: str, top: str) -> bool:
    if any(_inside(path, d) for d in (*_install_dirs(), *_chosen_dirs())):
        return True
    # A setuptools editable install (its own import hook) declares the names in top_level.txt;
    # the hook, not the working directory, must then be what finds the module.
    if top in packages_distributions():
        for finder in sys.meta_path:
            if type(finder).__module__.startswith("__editable__"):
                found = finder.find_spec(top, None)  # type: ignore[call-arg]
                if found is not None and any(_inside(path, os.path.realpath(p)) or os.path.realpath(p) == path
                                             for p in _locations(found)):
                    return True
    return False


#: ``(sys.path when scanned, group -> entry points)``: a new ``sys.path`` is scanned again.
_ENTRY_POINTS: tuple[tuple[str, ...], dict[str, list[EntryPoint]]] | None = None


def plugin_entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, from one scan of the installed distributions.

    Reading every distribution's metadata costs ~15 ms a scan in a venv of a few hundred
    packages; one scan serves every registry of the process (a registry loads once anyway), and
    worker processes inherit it from the fork server, which makes it (:mod:`interleaf._preload`).
    Nothing is imported here: a plugin's own code runs only when its registry loads.
    """
    global _ENTRY_POINTS
    path = tuple(dict.fromkeys(sys.path))  # a folder twice finds nothing more
    if _ENTRY_POINTS is None or _ENTRY_POINTS[0] != path:
        every = entry_points()
        found = {name: list(every.select(group=name)) for name in every.groups if name.startswith("interleaf.")}
        _ENTRY_POINTS = (path, found)
    return list(_ENTRY_POINTS[1].get(group, ()))


class Registry(Generic[T]):
    """A name -> object table with lazy built-ins and entry-point discovery."""

    def __init__(self, what: str, group: str, builtins: tuple[str, ...]):
        self.what = what
        self.group = group
        self._builtins = builtins
        self._items: dict[str, T] = {}
        self._broken: dict[str, str] = {}
        self._loaded = False

    @property
    def builtin_modules(self) -> tuple[str, ...]:
        """The modules whose import registers the built-in entries."""
        return self._builtins

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register an object under ``name`` (a later registration replaces it)."""

        def deco(obj: T) -> T:
            self._items[name] = obj
            self._broken.pop(name, None)
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtins:
            importlib.import_module(module)
        for ep in plugin_entry_points(self.group):
            if ep.name in self._items:
                continue
            # One broken plugin must not break every graph: remember why, report it when used.
            try:
                self._items[ep.name] = ep.load()
            except Exception as exc:
                self._broken[ep.name] = f"{ep.value} failed to load: {type(exc).__name__}: {exc}"

    def names(self) -> list[str]:
        """Registered names (built-ins and entry points that loaded)."""
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """Look up by registered name, or import ``module:attr``; ``LookupError`` names the choices."""
        if ":" in name:
            try:
                return import_object(name)  # type: ignore[no-any-return]
            except LookupError as exc:
                raise LookupError(f"{self.what} {name!r}: {exc}") from None
        self._load()
        if name in self._items:
            return self._items[name]
        if name in self._broken:
            raise LookupError(f"{self.what} {name!r} (entry point of group {self.group}): {self._broken[name]}")
        known = ", ".join(self.names()) or "none"
        raise LookupError(f"unknown {self.what} {name!r} (known: {known})")
