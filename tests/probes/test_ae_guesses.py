"""The default called-AE guesses are product defaults the DICOM reference documents (§4.2), few
and in the order docs/dicom-reference.md §3.5 gives: each guess costs the peer one association."""

from __future__ import annotations

import re
from pathlib import Path

from pacswatch.probes.base import DEFAULT_AE_GUESSES

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "dicom-reference.md"


def section(number: str) -> str:
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(f"### {number} ")
    end = text.find("\n### ", start + 1)
    return text[start:end]


def test_every_default_guess_is_a_documented_product_default():
    documented = set(re.findall(r"`([A-Z0-9_-]+)`", section("4.2")))
    assert set(DEFAULT_AE_GUESSES) <= documented, set(DEFAULT_AE_GUESSES) - documented


def test_the_guesses_are_few_and_in_the_documented_order():
    assert len(DEFAULT_AE_GUESSES) == len(set(DEFAULT_AE_GUESSES)) <= 8
    said = re.findall(r"`([A-Z0-9_-]+)`", section("3.5"))
    assert [t for t in dict.fromkeys(said) if t in DEFAULT_AE_GUESSES] == list(DEFAULT_AE_GUESSES)  # first mentions
