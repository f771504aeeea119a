"""The command line: `pacswatch scan|probe|lab|demo|schema`, the campaign commands (cli_campaign.py)
and the owner and notification commands (cli_notify.py)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pacswatch import __version__
from pacswatch import cli_notify, cli_web
from pacswatch.cli_campaign import (
    add_commands,
    add_database_option,
    add_no_resolve_option,
    add_probe_options,
    add_scan_options,
    dispatch,
    optout_reason,
)
from pacswatch.cli_types import at_least, integer, positive
from pacswatch.targets import PortError, TargetError
from pacswatch.targets.ports import DEFAULT_DICOM_PORTS

if TYPE_CHECKING:
    from rich.console import Console

# What only one command needs (the probes, the store, rich's tables) is imported inside that
# command, so that `--help`, a usage error or `schema` does not load the scan's whole stack.

EXIT_USAGE = 2
DEFAULT_RATE = 200.0  # new connections per second
EXIT_INTERRUPTED = 130


# Kept for callers of the old names; every option names its own type (cli_types.py).
_positive_float = positive("number", float)
_positive_int = positive("whole number")
DEFAULT_TOP = 25  # rows of the end-of-scan table on a terminal
# The web probe's default ports (probes/registry.py DEFAULT_WEB_PORTS), for --help: importing
# the probes to build the parser would load the scan's stack for every usage error.
DEFAULT_WEB_PORTS_TEXT = "8042, 80, 443, 8080, 8443"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacswatch", description=(
        "Find exposed DICOM/PACS servers in ranges you are authorised to scan, and measure what "
        "they expose without taking patient data."))
    parser.add_argument("--version", action="version", version=f"pacswatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="scan targets", description=(
        "TARGET is an IPv4/IPv6 address, a CIDR, a range (a-b), a host name, HOST:PORT, or @FILE."))
    scan.add_argument("targets", nargs="*", metavar="TARGET", help="what to scan (see above); none with --resume "
                      "or --import-masscan/--import-zmap")
    scan.add_argument("--ports", default=None, metavar="LIST",
                      help="ports to scan, e.g. 104,11112,4000-4010 (default: the DICOM ports "
                           f"{', '.join(map(str, DEFAULT_DICOM_PORTS))} and the web ports {DEFAULT_WEB_PORTS_TEXT})")
    scan.add_argument("--web-ports", default=None, metavar="LIST", help="ports probed as HTTP(S) instead of DICOM "
                      f"(default {DEFAULT_WEB_PORTS_TEXT})")
    scan.add_argument("--output", "-o", metavar="FILE", help="write the records to FILE; - or none: standard output")
    scan.add_argument("--format", choices=("jsonl", "table"), default=None,
                      help="jsonl: one JSON record per endpoint; table: the endpoints that answered, most severe "
                           "first (default: table on a terminal, jsonl to a file or a pipe)")
    scan.add_argument("--open", action="store_true", dest="open_only",
                      help="output only endpoints that answered (every endpoint is still stored and counted)")
    scan.add_argument("--top", type=at_least("row count", 0), default=DEFAULT_TOP, metavar="N",
                      help=f"tables shown on a terminal stop at the N most severe endpoints, with the command that "
                           f"lists the rest (default {DEFAULT_TOP}; 0: all)")
    scan.add_argument("--rate", type=positive("rate", float), default=200.0, metavar="N",
                      help="new connections per second, all probes together (default 200)")
    scan.add_argument("--concurrency", type=positive("concurrency"), default=200, metavar="N",
                      help="endpoints probed at once (default 200)")
    scan.add_argument("--exclude", action="append", default=[], metavar="FILE",
                      help="never scan what this file lists (addresses, CIDRs, ranges); repeatable")
    scan.add_argument("--scope", metavar="FILE", help="refuse anything outside the networks this file lists")
    scan.add_argument("--seed", type=integer("seed"), help="seed of the random scan order (default: random)")
    scan.add_argument("--workers", type=positive("number of workers"), default=1, metavar="N",
                      help="probe in N processes (one core each); rate and concurrency are shared out "
                           "(default 1)")
    scan.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                      help="event loop: uvloop when installed (auto), or the standard one")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    scan.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    add_probe_options(scan)
    add_scan_options(scan)

    probe = sub.add_parser("probe", help="probe one endpoint and print a full report (no port: the default "
                                         "DICOM ports, a report for each that answers)")
    probe.add_argument("endpoint", metavar="HOST[:PORT]", help="an address or a name; without a port, the "
                       "default DICOM ports")
    probe.add_argument("--json", action="store_true", help="print the record as JSON")
    probe.add_argument("--web", action="store_true", help="probe the port as HTTP(S) even if it is not a web port")
    add_probe_options(probe)
    add_database_option(probe)  # its opt-out list and scope apply here too
    add_no_resolve_option(probe)

    lab_where = ("The lab binds loopback addresses in the /24 of --base-ip (default 127.42.0.0/24): "
                 "simulated DICOM peers on .10 to .26, port 11112 (the TLS peers on port 2762), and "
                 "web endpoints (Orthanc, DICOMweb, dcm4chee, OHIF, a login page) on .40, ports 8040 "
                 "to 8049 (free ports when those are taken); .41 is the off-host address a viewer "
                 "names and that must never be contacted. Synthetic patients only.")
    lab = sub.add_parser("lab", help="run the lab of simulated PACS on loopback until Ctrl-C",
                         description=lab_where + " It prints its endpoints at start and runs until Ctrl-C.")
    lab.add_argument("--base-ip", default="127.42.0.0", help="loopback /24 the lab uses (default 127.42.0.0)")

    demo = sub.add_parser("demo", help="start the lab, scan it, print the findings",
                          description=lab_where + " The demo scans it into a throw-away database "
                                                  "(unless --database) and checks every finding.")
    demo.add_argument("--base-ip", default="127.42.0.0", help="loopback /24 the lab uses (default 127.42.0.0)")
    demo.add_argument("--output", "-o", metavar="FILE", help="also write the records as JSON Lines")
    demo.add_argument("--database", metavar="URL",
                      help="store the demo scan here (default: a throw-away database, removed at the end)")
    demo.add_argument("--serve", action="store_true", help="then serve the dashboard on the scanned database "
                      "(owner, cases, a demo user with a random password) on 127.0.0.1 until Ctrl-C")
    demo.add_argument("--port", type=cli_web.port, default=8000, help="the dashboard's port with --serve "
                      "(default 8000)")

    sub.add_parser("schema", help="print the JSON Schema of the record")
    add_commands(sub)
    cli_notify.add_commands(sub)
    cli_web.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("scan", "export") and getattr(args, "output", None) == "-":
        args.output = None  # "-" is standard output, as everywhere, not a file named "-"
    # Imported after parsing: --help and usage errors do without it.
    from pacswatch.output import error_line, stderr_console

    err = stderr_console()
    try:
        if getattr(args, "create_dirs", False):
            from pacswatch.store.engine import create_database_directory

            create_database_directory(args.database)
        if (handler := getattr(args, "handler", None)) is not None:  # commands that name their handler
            return handler(args)
        if (code := dispatch(args, err)) is not None:
            return code
        if (code := cli_notify.dispatch(args)) is not None:
            return code
        if args.command == "scan":
            return cmd_scan(args, err)
        if args.command == "probe":
            return cmd_probe(args, err)
        if args.command == "schema":
            from pacswatch.record import record_schema_text

            sys.stdout.write(record_schema_text())
            return 0
        if args.command == "lab":
            from pacswatch.cli_lab import run_lab_command

            return run_lab_command(args.base_ip)
        if args.command == "demo":
            from pacswatch.cli_lab import run_demo_command

            serve = (lambda db, network: cli_web.serve_demo(db, network, port=args.port)) if args.serve else None
            return run_demo_command(args.base_ip, args.output, scan=scan_from_argv, database=args.database,
                                    serve=serve)
    except (TargetError, PortError, ValueError, OSError) as exc:
        err.print(error_line(f"pacswatch {args.command}:", exc), highlight=False, soft_wrap=True)
        return EXIT_USAGE
    return EXIT_USAGE


def cmd_scan(args: argparse.Namespace, err: Console) -> int:
    # Every scan is stored, and so resumable: the campaign layer builds the plan and runs the job.
    from pacswatch.cli_campaign import campaign_scan

    # The defaults, where they are declared: a resume refuses the options it would ignore.
    return campaign_scan(args, err, defaults=build_parser().parse_args(["scan"]))


def scan_from_argv(argv: list[str]) -> int:
    """`pacswatch scan ARGV...` in this process, through this parser: how the demo scans its lab
    (cli_lab.py, which gets it passed in rather than importing this module back)."""
    from pacswatch.output import stderr_console

    return cmd_scan(build_parser().parse_args(argv), stderr_console())


def cmd_probe(args: argparse.Namespace, err: Console) -> int:
    try:
        return _probe(args, err)
    except KeyboardInterrupt:  # Ctrl-C: one line, not the stack of every probe in flight
        err.print("pacswatch probe: interrupted", highlight=False, markup=False)
        return EXIT_INTERRUPTED


def _probe(args: argparse.Namespace, err: Console) -> int:
    import asyncio

    from pacswatch.findings.ingest import speaks
    from pacswatch.net.limits import RateLimiter
    from pacswatch.output import print_report, stdout_console
    from pacswatch.probes.base import Endpoint, ProbeContext
    from pacswatch.probes.options import probe_options
    from pacswatch.probes.registry import ProbeSelector
    from pacswatch.targets import parse_spec, parse_targets

    options = probe_options(args)
    spec = parse_spec(args.endpoint)
    if spec.span is not None:
        raise ValueError("probe takes one host (HOST or HOST:PORT); for networks, use scan")
    # A name is resolved here (unless --no-resolve); its first address is probed.
    targets = parse_targets([args.endpoint], resolve=not args.no_resolve)
    if spec.port is not None:
        ip = str(next(iter(targets.pinned)).ip)
        ports: tuple[int, ...] = (spec.port,)
    else:  # no port: the scan's default DICOM ports, and a full report for those that answer
        ip = str(next(iter(targets.ranges()))[0])
        ports = DEFAULT_DICOM_PORTS
    blocked = optout_reason(args.database, ip)  # the blocklist, opt-outs and scope, as for a scan
    if blocked:
        raise ValueError(f"{ip} is blocked: {blocked}")
    selector = ProbeSelector.from_args(",".join(map(str, ports)) if args.web else None)
    # The global rate limit holds here too: AE guessing may open a few dozen connections.
    ctx = ProbeContext(options, RateLimiter(DEFAULT_RATE, burst=10))

    async def probe_all():
        return await asyncio.gather(*(selector.probe_for(port).run(ctx, Endpoint(ip, port)) for port in ports))

    records = asyncio.run(probe_all())
    if args.json:
        text = records[0].model_dump_json(indent=2) if len(records) == 1 else \
            "[\n" + ",\n".join(r.model_dump_json(indent=2) for r in records) + "\n]"
        sys.stdout.write(text + "\n")
        return 0
    console = stdout_console()
    # One port asked for: its report whatever it says. Several: a report for each that answered.
    answered = [r for r in records if len(records) == 1 or speaks(r)]
    silent = [r for r in records if len(records) > 1 and not speaks(r)]
    for number, record in enumerate(answered):
        if number:
            console.print()
        print_report(console, record)
    if silent:
        console.print(("" if not answered else "\n") + f"no service on {ip}: "
                      + ", ".join(f"{r.port} ({r.status})" for r in silent), highlight=False, markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
