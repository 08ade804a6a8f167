"""A stand-in for a kill: the n-th call of a function raises KeyboardInterrupt, as a kill between checkpoints
looks to a training loop; the calls before it run the real function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def interrupted_on_call(function: Callable[..., Any], n: int) -> Callable[..., Any]:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise KeyboardInterrupt
        return function(*args, **kwargs)

    return wrapper
