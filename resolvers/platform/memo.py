"""`cached`: a read-once attribute, like functools.cached_property without its lock.

Python 3.11's cached_property takes a lock on every first read; the pre-request decision reads such attributes of
objects it builds per request (a caller's key hash, a budget check's remaining amount), so the lock was paid on
every request. The event loop runs the decision on one thread, and computing a value twice would be harmless
anyway (the functions are pure). After the first read the value sits in the instance's `__dict__`, which wins
over this non-data descriptor: later reads are plain attribute reads (frozen dataclasses included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar, overload

T = TypeVar("T")


class cached(Generic[T]):
    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | Self:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value
        return value
