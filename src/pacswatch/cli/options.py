"""The options more than one command takes, and the argparse types of every command: each
option, its help and its default written once, here.

argparse names a bad value by its type function's `__name__` ("invalid _positive_float value:
'abc'"), so each type here is made with the name a person reads: `--rate abc` says
"argument --rate: invalid rate: 'abc' is not a number". NaN and infinities are refused too:
float() takes "nan" and "inf", and a rate of NaN would pass every `<= 0` check.

Nothing here imports the store or the probes' stack (only their declarations): `--help` and a
usage error build the parser only.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

# The probes' declarations, not the probes: light enough for every --help.
from pacswatch.probes import registry
from pacswatch.probes.options import ProbeSettings

if TYPE_CHECKING:
    from pacswatch.campaign.settings import DistributedSettings

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


def port(text: str) -> int:  # argparse names a bad value by this function's name: "invalid port"
    number = int(positive("port")(text))
    if number > 65535:
        raise _Invalid(f"invalid port: {text!r} is above 65535")
    return number


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


DEFAULT_WEB_PORTS_TEXT = ", ".join(map(str, registry.DEFAULT_WEB_PORTS))


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


def distributed(p: argparse.ArgumentParser, *, shards: bool = True) -> None:
    """--broker, --detach, --vantage (and --shard-size): `scan` (and `run`) on distributed workers."""
    p.add_argument("--broker", metavar="URL", help="run the scan on distributed workers through this Celery "
                   "broker, e.g. redis://host:6379/0 (the database must be the workers' PostgreSQL)")
    p.add_argument("--detach", action="store_true", help="with --broker: send the shards and return at once "
                   "with the scan ID (follow with `pacswatch scans`)")
    p.add_argument("--vantage", metavar="A,B", help="with --broker: scan from these vantages (workers started "
                   "with --vantage NAME); one scan per vantage, each observation records its vantage")
    if shards:
        p.add_argument("--shard-size", type=positive("shard size"), default=None, metavar="N",
                       help="endpoints per shard (default 4096)")


def distributed_settings(args: argparse.Namespace) -> DistributedSettings:
    """The distributed options of `scan` or `run` as the campaign takes them."""
    from pacswatch.campaign.settings import DistributedSettings

    return DistributedSettings(broker=args.broker, detach=args.detach,
                               vantages=tuple(v.strip() for v in (args.vantage or "").split(",") if v.strip()),
                               shard_size=getattr(args, "shard_size", None))  # `run` has none


def probe(p: argparse.ArgumentParser) -> None:
    """The probes' options, for `scan`, `probe` and `run`: each probe declares its own
    (probes/options.py), so a new probe brings its options without an edit here."""
    for option in registry.declared_options():
        flag = f"--{option.name}"
        if option.kind is bool:
            p.add_argument(flag, action="store_true", help=option.help)
            continue
        kind: Callable[[str], Any] = str  # text, unless a number or checked
        if option.kind in (int, float):
            kind = positive(option.what, option.kind)
        elif option.check is not None:
            kind = checked(option.what, option.check)
        p.add_argument(flag, type=kind, default=option.default, metavar=option.metavar, help=option.help)


def probe_settings(args: argparse.Namespace) -> ProbeSettings:
    """The values of the probes' options, as the layers below take them."""
    return registry.probe_settings({o.key: getattr(args, o.key) for o in registry.declared_options()})


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
