"""`pacswatch scan` (every scan is stored, and so resumable) and `pacswatch probe` (one
endpoint, a full report)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pacswatch.cli import options
from pacswatch.cli.options import DEFAULT_CONCURRENCY, DEFAULT_RATE, DEFAULT_WEB_PORTS_TEXT, at_least, integer, positive
from pacswatch.targets.ports import DEFAULT_DICOM_PORTS

if TYPE_CHECKING:
    from rich.console import Console

    from pacswatch.campaign.settings import ScanSettings

EXIT_INTERRUPTED = 130
DEFAULT_TOP = 25  # rows of the end-of-scan table on a terminal


def register(sub) -> None:
    scan = sub.add_parser("scan", help="scan targets", description=(
        "TARGET is an IPv4/IPv6 address, a CIDR, a range (a-b), a host name, HOST:PORT, or @FILE."))
    scan.add_argument("targets", nargs="*", metavar="TARGET", help="what to scan (see above); none with --resume "
                      "or --import-masscan/--import-zmap")
    scan.add_argument("--ports", default=None, metavar="LIST",
                      help="ports to scan, e.g. 104,11112,4000-4010 (default: the DICOM ports "
                           f"{', '.join(map(str, DEFAULT_DICOM_PORTS))} and the web ports {DEFAULT_WEB_PORTS_TEXT})")
    options.web_ports(scan)
    scan.add_argument("--output", "-o", metavar="FILE", help="write the records to FILE; - or none: standard output")
    scan.add_argument("--format", choices=("jsonl", "table"), default=None,
                      help="jsonl: one JSON record per endpoint; table: the endpoints that answered, most severe "
                           "first (default: table on a terminal, jsonl to a file or a pipe)")
    scan.add_argument("--open", action="store_true", dest="open_only",
                      help="output only endpoints that answered (every endpoint is still stored and counted)")
    scan.add_argument("--top", type=at_least("row count", 0), default=DEFAULT_TOP, metavar="N",
                      help=f"tables shown on a terminal stop at the N most severe endpoints, with the command that "
                           f"lists the rest (default {DEFAULT_TOP}; 0: all)")
    options.pace(scan)
    options.exclusions(scan)
    scan.add_argument("--seed", type=integer("seed"), help="seed of the random scan order (default: random)")
    scan.add_argument("--workers", type=positive("number of workers"), default=1, metavar="N",
                      help="probe in N processes (one core each); rate and concurrency are shared out "
                           "(default 1)")
    options.event_loop(scan)
    scan.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    scan.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    options.probe(scan)
    options.database(scan)
    scan.add_argument("--resume", type=positive("scan ID"), metavar="ID", help="continue scan ID where it stopped "
                      "(same targets, ports, seed and probe options; nothing done is probed again)")
    scan.add_argument("--import-masscan", action="append", default=[], metavar="FILE",
                      help="probe the open ports in masscan -oJ or -oL output; repeatable")
    scan.add_argument("--import-zmap", action="append", default=[], metavar="FILE",
                      help="probe the open ports in ZMap CSV output (bare addresses: --ports names the port)")
    scan.add_argument("--keep-all", action="store_true",
                      help="store every record, also of addresses where nothing answered")
    scan.add_argument("--no-attribute", action="store_true",
                      help="do not look up the owners of exposed addresses when the scan ends")
    options.confirm_fixed_after(scan)
    options.scan_config(scan)
    options.no_resolve(scan)
    # None: a new scan takes the default (scan_settings), a resumed one what it was started with.
    scan.set_defaults(rate=None, concurrency=None, handler=cmd_scan)

    probe = sub.add_parser("probe", help="probe one endpoint and print a full report (no port: the default "
                                         "DICOM ports, a report for each that answers)")
    probe.add_argument("endpoint", metavar="HOST[:PORT]", help="an address or a name; without a port, the "
                       "default DICOM ports")
    probe.add_argument("--json", action="store_true", help="print the record as JSON")
    probe.add_argument("--web", action="store_true", help="probe the port as HTTP(S) even if it is not a web port")
    options.probe(probe)
    options.database(probe)  # its opt-out list and scope apply here too
    options.no_resolve(probe)
    probe.set_defaults(handler=cmd_probe)


def scan_settings(args: argparse.Namespace) -> ScanSettings:
    """`pacswatch scan`'s arguments as the campaign takes them."""
    from pacswatch.campaign.settings import FollowUp, OutputSettings, PaceSettings, ScanPlanSettings, ScanSettings

    resuming = args.resume is not None
    plan = ScanPlanSettings(targets=tuple(args.targets), ports=args.ports, web_ports=args.web_ports,
                            masscan=tuple(args.import_masscan), zmap=tuple(args.import_zmap),
                            exclude=tuple(args.exclude), scope=args.scope, seed=args.seed, keep_all=args.keep_all,
                            no_resolve=args.no_resolve)
    # Not given: a new scan takes the defaults, a resumed one what it was started with.
    pace = PaceSettings(rate=args.rate if args.rate is not None or resuming else DEFAULT_RATE,
                        concurrency=args.concurrency if args.concurrency is not None or resuming else
                        DEFAULT_CONCURRENCY, loop=args.loop, workers=args.workers, quiet=args.quiet,
                        no_progress=args.no_progress)
    # "-" is standard output, as everywhere, not a file named "-".
    output = OutputSettings(path=None if args.output == "-" else args.output or None, format=args.format,
                            open_only=args.open_only, top=args.top or None)
    follow_up = FollowUp(config=args.config, confirm_fixed_after=args.confirm_fixed_after,
                         attribute=not args.no_attribute)
    return ScanSettings(database=args.database, plan=plan, probe=options.probe_settings(args), pace=pace,
                        output=output, follow_up=follow_up, resume=args.resume)


def cmd_scan(args: argparse.Namespace) -> int:
    # Every scan is stored, and so resumable: the campaign layer builds the plan and runs the job.
    from pacswatch.campaign.commands import campaign_scan
    from pacswatch.output import stderr_console

    return campaign_scan(scan_settings(args), stderr_console())


def scan_from_argv(argv: list[str]) -> int:
    """`pacswatch scan ARGV...` in this process, through this parser: how the demo scans its lab."""
    from pacswatch.cli import build_parser

    return cmd_scan(build_parser().parse_args(argv))


def cmd_probe(args: argparse.Namespace) -> int:
    from pacswatch.output import stderr_console

    try:
        return _probe(args, stderr_console())
    except KeyboardInterrupt:  # Ctrl-C: one line, not the stack of every probe in flight
        stderr_console().print("pacswatch probe: interrupted", highlight=False, markup=False)
        return EXIT_INTERRUPTED


def optout_reason(database: str | None, ip) -> str | None:
    """Why `ip` may not be contacted: the default blocklist, the opt-out list and the scope in
    the database, the same check as every scan's (`pacswatch probe` honours them too)."""
    from pacswatch.campaign.scope import scope_reason
    from pacswatch.store.errors import StoreError
    from pacswatch.store.repository import Repository

    try:
        with Repository.open(database) as repo:
            return scope_reason(repo, ip)
    except StoreError as exc:  # unknown opt-outs or scope: refuse rather than risk contacting one
        raise ValueError(f"cannot read the opt-out list and scope: {exc}") from exc


def _probe(args: argparse.Namespace, err: Console) -> int:
    import asyncio

    from pacswatch.findings.ingest import speaks
    from pacswatch.net.limits import RateLimiter
    from pacswatch.output import print_report, stdout_console
    from pacswatch.probes.base import Endpoint, ProbeContext
    from pacswatch.probes.registry import ProbeSelector, probe_options
    from pacswatch.scan.runner import probe_endpoint
    from pacswatch.targets import parse_spec, parse_targets

    probe = probe_options(options.probe_settings(args))
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
    selector = ProbeSelector.for_web_ports(",".join(map(str, ports)) if args.web else None)
    # The global rate limit holds here too: AE guessing may open a few dozen connections.
    ctx = ProbeContext(probe, RateLimiter(DEFAULT_RATE, burst=10))

    async def probe_all():
        return await asyncio.gather(*(probe_endpoint(selector.probe_for(port), ctx, Endpoint(ip, port)) for port in ports))

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
