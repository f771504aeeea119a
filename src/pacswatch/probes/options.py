"""ProbeOptions from the command line's probe flags, or from a stored scan's copy of them.

Apart from the CLI so that a scan's worker processes (scan/worker.py) build the same options
without importing the command line, the store and the rest.
"""

from __future__ import annotations

from pacswatch.identity import Identity
from pacswatch.probes.base import DEFAULT_AE_GUESSES, ProbeOptions, Timeouts
from pacswatch.targets.ports import parse_ports


def probe_options(args) -> ProbeOptions:
    """`args`: an argparse Namespace (or any object) with the probe flags' attributes."""
    guesses: tuple[str, ...] = DEFAULT_AE_GUESSES
    if args.ae_guess:
        guesses = tuple(a.strip() for a in args.ae_guess.split(",") if a.strip())
        if len(guesses) > 32 or any(len(a) > 16 for a in guesses):
            raise ValueError("--ae-guess takes at most 32 AE titles of at most 16 characters")
    if args.no_ae_guess:
        guesses = ()
    return ProbeOptions(
        identity=Identity(calling_ae=args.calling_ae, contact_url=args.contact_url),
        timeouts=Timeouts.scaled(args.timeout),
        find=not args.no_find,
        find_limit=args.find_limit,
        ae_guess=guesses,
        tls_ports=frozenset(parse_ports(args.tls_ports)),
        try_default_credentials=args.try_default_credentials,
    )
