"""The README's links within itself lead somewhere: every `(#anchor)` is the anchor of one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation (backticks, colons, '+', '?') dropped, spaces as
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_github_anchor_matches_githubs_rule() -> None:
    assert github_anchor("Other algorithms: TD3+BC, IQL and BC") == "other-algorithms-td3bc-iql-and-bc"
    assert github_anchor("Width or layer?") == "width-or-layer"
    assert github_anchor("Local D4RL-recipe datasets") == "local-d4rl-recipe-datasets"


def test_every_link_within_the_readme_names_one_of_its_headings() -> None:
    text = README.read_text()
    # Fenced code holds shell comments that start with '#', not headings.
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    headings = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", prose, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)\s]+)\)", text)
    assert links, "the README links to its own sections"
    assert sorted(set(links) - headings) == []
