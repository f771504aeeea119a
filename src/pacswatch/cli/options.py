"""The options more than one command takes, and the argparse types of every command: each
option, its help and its default written once, here.

argparse names a bad value by its type function's `__name__` ("invalid _positive_float value:
'abc'"), so each type here is made with the name a person reads: `--rate abc` says
"argument --rate: invalid rate: 'abc' is not a number". NaN and infinities are refused too:
float() takes "nan" and "inf", and a rate of NaN would pass every `<= 0` check.

Nothing here imports the store or the probes' stack: `--help` and a usage error build the
parser only.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pacswatch.identity import DEFAULT_CONTACT_URL

DEFAULT_RATE = 200.0  # new connections per second, all probes together
DEFAULT_CONCURRENCY = 200  # endpoints probed at once
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


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


def positive(name: str, convert: type = int) -> Callable[[str], Any]:
    """A number greater than 0 (an int unless `convert` is float)."""
    return _number(name, convert, 0, inclusive=False)


def at_least(name: str, minimum: int, convert: type = int) -> Callable[[str], Any]:
    """A number of at least `minimum`."""
    return _number(name, convert, minimum, inclusive=True)


def integer(name: str) -> Callable[[str], int]:
    """Any whole number (a seed)."""
    return _number(name, int, None, inclusive=True)


def checked(name: str, check: Callable[[str], object]) -> Callable[[str], str]:
    """Text that `check` accepts (it raises ValueError saying what is wrong), kept unchanged:
    the error is a clear line before anything is sent."""
    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        return text

    parse.__name__ = name
    return parse


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


# ---------------------------------------------------------------- options of several commands

def database(p: argparse.ArgumentParser, *, create_dirs: bool = True) -> None:
    p.add_argument("--database", metavar="URL", help="SQLite path or URL, or postgresql://... (default: "
                   "$PACSWATCH_DATABASE_URL, else pacswatch.db in the user's data directory)")
    if create_dirs:
        p.add_argument("--create-dirs", action="store_true",
                       help="create the directory of the SQLite file if it does not exist (else an error)")


def no_resolve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-resolve", action="store_true",
                   help="look up no host name: every host must be given as an address")


def table_format(p: argparse.ArgumentParser, choices: tuple[str, ...] = ("table", "json")) -> None:
    p.add_argument("--format", choices=choices, default="table",
                   help="table: for a person (default); " + "; ".join(f"{c}: for programs" for c in choices[1:]))


def scan_config(p: argparse.ArgumentParser) -> None:
    # The same option as the notify commands' (notify_config): the resolver that attributes
    # what a scan found exposed and [campaign] confirm_fixed_after are read from it.
    p.add_argument("--config", metavar="FILE", help="attribution and notification settings (TOML; default "
                   "$PACSWATCH_NOTIFY_CONFIG): [attribution] and [campaign] are read")


def notify_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="attribution and notification settings (TOML; default "
                   "$PACSWATCH_NOTIFY_CONFIG); without one nothing is sent")


def confirm_fixed_after(p: argparse.ArgumentParser) -> None:
    p.add_argument("--confirm-fixed-after", metavar="DURATION", default=None,
                   help="a finding missed by one scan is fixed only when a second scan misses it at least this "
                        "much later, e.g. 6h, 30m; 0: the next miss (default: [campaign] confirm_fixed_after in "
                        "the notify config, else 6h)")


# The web probe's default ports (probes/registry.py DEFAULT_WEB_PORTS), for --help: importing
# the probes to build the parser would load the scan's stack for every usage error.
DEFAULT_WEB_PORTS_TEXT = "8042, 80, 443, 8080, 8443"


def pace(p: argparse.ArgumentParser) -> None:
    """How fast a scan goes: `scan` and `run`."""
    p.add_argument("--rate", type=positive("rate", float), default=DEFAULT_RATE, metavar="N",
                   help=f"new connections per second, all probes together (default {DEFAULT_RATE:g})")
    p.add_argument("--concurrency", type=positive("concurrency"), default=DEFAULT_CONCURRENCY, metavar="N",
                   help=f"endpoints probed at once (default {DEFAULT_CONCURRENCY})")


def web_ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web-ports", default=None, metavar="LIST", help="ports probed as HTTP(S) instead of DICOM "
                   f"(default {DEFAULT_WEB_PORTS_TEXT})")


def exclusions(p: argparse.ArgumentParser) -> None:
    """What a scan must never touch: `scan` and `run`."""
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="never scan what this file lists (addresses, CIDRs, ranges); repeatable")
    p.add_argument("--scope", metavar="FILE", help="refuse anything outside the networks this file lists")


def event_loop(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loop", choices=EVENT_LOOPS, default="auto",
                   help="event loop: uvloop when installed (auto), or the standard one")


def _ae_option(check: str):
    """An argparse type for AE titles (PS3.5 6.2): the value unchanged, or a clear error before
    anything is sent. `check` names the function in probes/options.py, imported only on use."""
    def parse(text: str) -> str:
        from pacswatch.probes import options

        try:
            getattr(options, check)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = "AE title"
    return parse


def probe(p: argparse.ArgumentParser) -> None:
    """The probe's options, for `scan`, `probe` and `run`."""
    p.add_argument("--timeout", type=positive("timeout", float), default=4.0, metavar="S",
                   help="connect and response timeout in seconds; the other deadlines derive from it (default 4)")
    p.add_argument("--no-find", action="store_true", help="do not send C-FIND (permission check and counts)")
    p.add_argument("--find-limit", type=positive("limit"), default=1000, metavar="N",
                   help="stop counting at N results with C-CANCEL and report 'at least N' (default 1000)")
    p.add_argument("--no-ae-guess", action="store_true",
                   help="do not retry rejected associations with product-default called AE titles")
    p.add_argument("--ae-guess", metavar="LIST", type=_ae_option("ae_titles"),
                   help="comma-separated called AE titles to try (at most 32)")
    p.add_argument("--calling-ae", default="PACSWATCH", type=_ae_option("ae_title"),
                   help="our calling AE title (default PACSWATCH)")
    p.add_argument("--contact-url", default=DEFAULT_CONTACT_URL, type=contact_url, metavar="URL",
                   help="contact URL (http, https or mailto) announced in the User-Agent; no user or password")
    p.add_argument("--tls-ports", default="2762", metavar="LIST", help="ports where TLS is tried first (default 2762)")
    p.add_argument("--try-default-credentials", action="store_true",
                   help="INTRUSIVE: try documented default web credentials (a login attempt); off by default")


def moment(text: str) -> datetime:
    """--since, --requested: a date, a time or an age (7d), as a UTC time. Read when the command
    runs (an age counts back from now), so a bad one is a ValueError then, not a usage error."""
    from pacswatch.findings.schedule import parse_duration

    try:
        return datetime.now(timezone.utc) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2024-05-01), a time (2024-05-01T12:00) nor an age (7d)") from None
    # UTC, as stored: SQLite compares the text of the times and would ignore another zone.
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
