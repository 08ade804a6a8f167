"""Stand-ins for what training meets: a kill (the n-th call of a function raises KeyboardInterrupt, as a kill
between checkpoints looks to a training loop; the calls before it run the real function), and a seed that
diverges."""

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


class FirstEpochDiverges:
    """`bench.train._train_epoch` whose first epoch since `restart()` gives seed 0 of the group a non-finite critic
    loss; `epochs` counts the epochs trained since then."""

    def __init__(self, train_epoch: Callable[..., Any]) -> None:
        self.train_epoch = train_epoch
        self.epochs = 0

    def restart(self) -> FirstEpochDiverges:
        self.epochs = 0
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.epochs += 1
        seconds, losses = self.train_epoch(*args, **kwargs)
        if self.epochs == 1:
            losses = {**losses, "critic_loss": losses["critic_loss"].copy()}
            losses["critic_loss"][0] = float("nan")
        return seconds, losses
