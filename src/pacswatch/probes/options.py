"""ProbeOptions from the command line's probe flags, or from a stored scan's copy of them.

Apart from the CLI so that a scan's worker processes (scan/worker.py) build the same options
without importing the command line, the store and the rest. The AE title checks are also the
command line's argparse types, so this module imports only the light protocol codec at the top:
the probes' stack loads when options are built, not when a flag is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pacswatch.dicom.pdu import ae_title_problem

if TYPE_CHECKING:
    from pacswatch.probes.base import ProbeOptions

MAX_AE_GUESSES = 32


def ae_title(text: str) -> str:
    """`text` if it is a valid AE title (PS3.5 6.2), else ValueError saying why."""
    problem = ae_title_problem(text)
    if problem is not None:
        raise ValueError(f"invalid AE title {text!r}: {problem}")
    return text


def ae_titles(text: str) -> tuple[str, ...]:
    """A comma-separated list of AE titles (at most MAX_AE_GUESSES), each checked; ValueError."""
    titles = tuple(a.strip() for a in text.split(",") if a.strip())
    if not titles or len(titles) > MAX_AE_GUESSES:
        raise ValueError(f"takes 1 to {MAX_AE_GUESSES} comma-separated AE titles, got {len(titles)}")
    for title in titles:
        ae_title(title)
    return titles


def probe_options(args: Any) -> ProbeOptions:
    """`args`: an argparse Namespace (or any object) with the probe flags' attributes."""
    from pacswatch.identity import Identity
    from pacswatch.probes.base import DEFAULT_AE_GUESSES, ProbeOptions, Timeouts
    from pacswatch.targets.ports import parse_ports

    guesses: tuple[str, ...] = DEFAULT_AE_GUESSES
    if args.ae_guess:
        guesses = ae_titles(args.ae_guess)
    if args.no_ae_guess:
        guesses = ()
    return ProbeOptions(
        identity=Identity(calling_ae=ae_title(args.calling_ae), contact_url=args.contact_url),
        timeouts=Timeouts.scaled(args.timeout),
        find=not args.no_find,
        find_limit=args.find_limit,
        ae_guess=guesses,
        tls_ports=frozenset(parse_ports(args.tls_ports)),
        try_default_credentials=args.try_default_credentials,
        # Absent from the stored options of scans made before the check existed.
        random_ports=getattr(args, "check_random_ports", 0) or 0,
        random_port_range=port_range(getattr(args, "random_port_range", None) or "49152-65535"),
    )


def port_range(text: str) -> tuple[int, int]:
    """LO-HI, two TCP ports, LO <= HI; ValueError saying what is wrong."""
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi)
    except ValueError:
        raise ValueError(f"a port range is LO-HI, got {text!r}") from None
    if not sep or not 1 <= first <= last <= 65535:
        raise ValueError(f"a port range is LO-HI with 1 <= LO <= HI <= 65535, got {text!r}")
    return first, last
