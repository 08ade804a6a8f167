"""The one exception type the CLI turns into a single line and a non-zero exit, the hint its messages give for a
mistyped name, and the first line of an error's text that one-line messages quote."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A user-facing error: the message names the file, key or value at fault and what to do."""


def did_you_mean(name: object, known: Iterable[str], cutoff: float = 0.6) -> str:
    """The hint "did you mean 'x'? " for the closest of `known` to a mistyped `name`, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? " if close else ""


def first_line(text: str | None) -> str:
    """The first non-blank line of an error's text (a traceback, an exception's message); "" for none."""
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
