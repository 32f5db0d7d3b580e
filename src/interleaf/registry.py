"""Named registries for node kinds, tools and edge predicates.

Built-ins register on import; other packages add entries through the entry-point
groups ``interleaf.nodes``, ``interleaf.tools`` and ``interleaf.predicates``.
Anything can also be named by import path ``package.module:attr``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with lazy built-ins and entry-point discovery."""

    def __init__(self, what: str, group: str, builtins: tuple[str, ...]):
        self.what = what
        self.group = group
        self._builtins = builtins
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._items[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtins:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """Look up by registered name, or import ``module:attr``; ``LookupError`` names the choices."""
        if ":" in name:
            module_name, _, attr = name.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise LookupError(f"cannot import module {module_name!r} for {self.what} {name!r}: {exc}") from None
            try:
                return getattr(module, attr)  # type: ignore[no-any-return]
            except AttributeError:
                raise LookupError(f"module {module_name!r} has no attribute {attr!r}") from None
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise LookupError(f"unknown {self.what} {name!r} (known: {known})") from None
