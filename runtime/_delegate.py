"""``delegate``: a class attribute that is a collaborator's bound method, so a façade
(``Runtime``) names every public call in one table without writing a wrapper for each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = ["delegate"]

P = ParamSpec("P")
R = TypeVar("R")


class delegate(Generic[P, R]):
    """``name = delegate("_part", Part.name)``: ``obj.name`` is ``obj._part.name``."""

    def __init__(self, part: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self._part = part
        self._name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> delegate[P, R]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self
        method: Callable[P, R] = getattr(getattr(obj, self._part), self._name)
        return method
