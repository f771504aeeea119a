"""argparse types for the numeric options of every command.

argparse names a bad value by its type function's `__name__` ("invalid _positive_float value:
'abc'"), so each type here is made with the name a person reads: `--rate abc` says
"argument --rate: invalid rate: 'abc' is not a number". NaN and infinities are refused too:
float() takes "nan" and "inf", and a rate of NaN would pass every `<= 0` check.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


class _Invalid(argparse.ArgumentTypeError):
    pass


def _number(name: str, convert: type, minimum: float | None, *, inclusive: bool) -> Callable[[str], Any]:
    kind = "a whole number" if convert is int else "a number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise _Invalid(f"invalid {name}: {text!r} is not {kind}") from None
        if not math.isfinite(value):
            raise _Invalid(f"invalid {name}: {text!r} is not {kind}")
        if minimum is not None and (value < minimum or (value == minimum and not inclusive)):
            raise _Invalid(f"invalid {name}: must be {'at least' if inclusive else 'greater than'} {minimum:g}")
        return value

    parse.__name__ = name  # what argparse calls it in an error it words itself
    return parse


def positive(name: str, convert: type = int) -> Callable[[str], float]:
    """A number greater than 0 (an int unless `convert` is float)."""
    return _number(name, convert, 0, inclusive=False)


def at_least(name: str, minimum: int, convert: type = int) -> Callable[[str], float]:
    """A number of at least `minimum`."""
    return _number(name, convert, minimum, inclusive=True)


def integer(name: str) -> Callable[[str], int]:
    """Any whole number (a seed)."""
    return _number(name, int, None, inclusive=True)


def contact_url(text: str) -> str:
    """--contact-url: announced in every request's User-Agent, so it is public and one header
    line. A user name or password in it is a mistake (it would be sent to every server scanned
    and stored with the scan's parameters), and so is a space or a control character."""
    from urllib.parse import urlsplit

    if any(c.isspace() or not c.isprintable() for c in text):
        raise _Invalid("invalid contact URL: it has a space or a control character")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise _Invalid(f"invalid contact URL: {exc}") from None
    if "@" in parts.netloc:
        raise _Invalid("invalid contact URL: it names a user or password (user@host), which every server "
                       "scanned would be sent; give a public page")
    if parts.scheme == "mailto" and "@" in parts.path:
        return text
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"invalid contact URL: {text!r} is not an http://, https:// or mailto: address")
    return text
