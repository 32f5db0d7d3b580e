"""Named registries for node kinds, tools and edge predicates.

Built-ins register on import; other packages add entries through the entry-point
groups ``interleaf.nodes``, ``interleaf.tools`` and ``interleaf.predicates``.
Anything can also be named by import path ``package.module:attr``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted); any failure is a ``LookupError``."""
    if not _IMPORT_PATH.match(path):
        raise LookupError(f"{path!r} is not an import path of the form 'package.module:attr'")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = _import_module(module_name)
    except Exception as exc:  # ImportError, or any error the module raises while importing
        raise LookupError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _import_module(name: str) -> Any:
    """Import ``name``; as with ``python -m``, the current directory is an import root too.

    The ``interleaf`` console script does not put the working directory on ``sys.path``, so
    a project's own node kinds (``kind: my_nodes:Summarize``) would otherwise only resolve
    under ``python -m interleaf``. The directory is appended, so it never shadows packages.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = name.split(".")[0]
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        importlib.invalidate_caches()
        return importlib.import_module(name)


class Registry(Generic[T]):
    """A name -> object table with lazy built-ins and entry-point discovery."""

    def __init__(self, what: str, group: str, builtins: tuple[str, ...]):
        self.what = what
        self.group = group
        self._builtins = builtins
        self._items: dict[str, T] = {}
        self._broken: dict[str, str] = {}
        self._loaded = False

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
        for ep in entry_points(group=self.group):
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
