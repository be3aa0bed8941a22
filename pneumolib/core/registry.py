"""Registries: each name registered beside its implementation, timm's `register_model` way.

What users extend (losses, optimizers, schedulers, samplers, transforms, CAM methods) is a Registry; an unknown name is
refused at once. The package's shipped files (the lung segmenter, the population reference) are loaded through one
`Shipped` registry, once per process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no implementation registered; str() is one line naming the kind and the known names."""

    def __str__(self) -> str:
        return self.args[0]


class Registry(Mapping):
    """Names mapped to implementations of one KIND, filled where each implementation is defined::

        LOSSES = Registry("loss")

        @LOSSES.register("focal")
        def _focal(config, counts): ...

    A read-only Mapping (`LOSSES["focal"]`, `"focal" in LOSSES`, `list(LOSSES)`), in registration order. Looking
    up a name nobody registered raises UnknownName listing the known ones; registering a name twice is refused."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers the decorated object under NAME and returns it unchanged."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: Any) -> Any:
        """Register OBJ under NAME (a lambda or a class, where a decorator cannot stand). OBJ may be a
        "package.module:attribute" string: imported when the name is first looked up, so listing the names (a
        command line's choices) costs no import of a heavy library."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def __getitem__(self, name: str) -> Any:
        try:
            obj = self._items[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(self._items)}") from None
        if isinstance(obj, str) and ":" in obj:  # registered by import path: imported on first use
            import importlib

            module, attr = obj.split(":", 1)
            obj = self._items[name] = getattr(importlib.import_module(module), attr)
        return obj

    def __setitem__(self, name: str, obj: Any) -> None:
        """Replace NAME's implementation, or register a new one (deliberate: `add` and `register` refuse a name
        twice; this is for swapping an implementation in, e.g. a test's spy)."""
        self._items[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


class Shipped:
    """The files shipped in the package (the lung segmenter, the population reference), each registered with its
    path and loader beside the code that reads it, and loaded at most once per process per version of the file (its
    size and modification time): every consumer shares one instance, and weights re-shipped in-process are read
    again. The one place such a memo lives."""

    def __init__(self):
        self._how: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {}
        self._loaded: dict[str, tuple[tuple, Any]] = {}

    def register(self, name: str, path: Callable[[], Any], load: Callable[[Any], Any]) -> None:
        """NAME's file is PATH() and LOAD(path) reads it."""
        if name in self._how:
            raise ValueError(f"shipped file {name!r} is registered twice")
        self._how[name] = (path, load)

    def get(self, name: str) -> Any:
        """NAME loaded (once per version of its file). OSError when the file is missing."""
        path_of, load = self._how[name]
        path = path_of()
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        held = self._loaded.get(name)
        if held is None or held[0] != key:
            held = self._loaded[name] = (key, load(path))
        return held[1]

    def forget(self, name: str) -> None:
        """Drop NAME's loaded instance (a caller that re-ships weights in-process, the tests)."""
        self._loaded.pop(name, None)


SHIPPED = Shipped()
