"""One registry, the shape of every extension point (after torchvision's model registry): the
score table, the member kinds, the engines and the export formats each hold one. Names keep the
order they were registered in; adding a name twice is refused; an unknown name is one line
listing the registered ones, raised as the caller's own error type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, error: type[Exception] = ValueError, builtin: tuple[str, ...] = ()):
        self.what, self.error = what, error
        self._items: dict[str, T] = {}
        self._builtin = set(builtin)
        self.generation = 0  # bumped by every change: a reader that keeps a copy knows when to renew it

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"a {self.what} {name!r} is already registered")
        self._items[name] = item
        self.generation += 1
        return item

    def remove(self, name: str) -> None:
        """Take a registered name out (a built-in one stays)."""
        if name in self._builtin:
            raise ValueError(f"the {self.what} {name!r} is built in")
        if self._items.pop(name, None) is not None:
            self.generation += 1

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self.error(f"unknown {self.what} {name!r}; registered: {', '.join(self._items)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def values(self) -> tuple[T, ...]:
        return tuple(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._items))
