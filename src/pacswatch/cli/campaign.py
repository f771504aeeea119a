"""The campaign's commands: `run` (rescan what is due) and the queries of what scans stored.

    pacswatch run [--once] [--now [SELECTOR]]    rescan services as they fall due, until stopped
    pacswatch findings|history|stats|scans        exposures, an endpoint's history, counts, scans
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from pacswatch.cli import options
from pacswatch.cli.db import reports_store_errors
from pacswatch.cli.options import positive

SEVERITIES = ("critical", "high", "medium", "low")
STATUSES = ("open", "fixed", "reopened", "opted-out")


def register(sub) -> None:
    run = sub.add_parser("run", help="rescan services as they fall due, until stopped")
    options.database(run)
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument("--tick", type=positive("tick", float), default=60.0, metavar="S",
                     help="seconds between looks for due services when none is due (default 60)")
    run.add_argument("--batch", type=positive("batch size"), default=1000, metavar="N",
                     help="services per rescan (default 1000)")
    run.add_argument("--interval", action="append", default=[], metavar="CLASS=DURATION",
                     help="rescan interval, e.g. critical=6h; classes critical, high, medium, low, fixed, none")
    options.pace(run)
    options.web_ports(run)
    options.exclusions(run)
    options.event_loop(run)
    run.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    options.confirm_fixed_after(run)
    options.scan_config(run)
    run.add_argument("--now", nargs="?", const="", default=None, metavar="SELECTOR",
                     help="rescan at once the known services at SELECTOR (an address, ADDRESS:PORT, CIDR or range; "
                          "none: every one that --severity names), then exit (with --forever, go on as run)")
    run.add_argument("--severity", action="append", default=[], metavar="LIST",
                     help="with --now: only services whose open finding has this severity (critical,high,...)")
    run.add_argument("--forever", action="store_true", help="with --now: after the rescan, run as usual until stopped")
    options.probe(run)
    options.distributed(run, shards=False)
    run.set_defaults(handler=cmd_run)

    findings = sub.add_parser("findings", help="exposures and their lifecycle")
    options.database(findings)
    findings.add_argument("--severity", action="append", default=[], metavar="LIST", help="critical,high,...")
    findings.add_argument("--status", action="append", default=[], metavar="LIST", help="open,fixed,reopened,opted-out")
    findings.add_argument("--since", metavar="WHEN", help="seen or fixed since: a date, a time, or an age (7d)")
    findings.add_argument("--scan", type=positive("scan ID"), metavar="ID",
                          help="only endpoints scan ID looked at (what a scan's table left out)")
    options.table_format(findings, ("table", "json", "csv"))
    findings.set_defaults(handler=cmd_findings)

    history = sub.add_parser("history", help="every observation and change of an endpoint or host")
    options.database(history)
    history.add_argument("endpoint", metavar="HOST[:PORT]", help="an address or a name, with or without a port")
    options.no_resolve(history)
    options.table_format(history)
    history.set_defaults(handler=cmd_history)

    stats = sub.add_parser("stats", help="counts by severity, product, port; exposed studies and patients")
    options.database(stats)
    options.table_format(stats)
    stats.set_defaults(handler=cmd_stats)

    scans = sub.add_parser("scans", help="the scans in the database (IDs for --resume)")
    options.database(scans)
    scans.add_argument("--limit", type=positive("limit"), default=50, metavar="N",
                       help="the N most recent scans (default 50)")
    options.table_format(scans)
    scans.set_defaults(handler=cmd_scans)


@reports_store_errors
def cmd_run(args: argparse.Namespace) -> int:
    from pacswatch.campaign.commands import campaign_run
    from pacswatch.campaign.settings import FollowUp, PaceSettings, RunSettings
    from pacswatch.output import stderr_console

    settings = RunSettings(
        database=args.database, web_ports=args.web_ports, exclude=tuple(args.exclude), scope=args.scope,
        probe=options.probe_settings(args),
        pace=PaceSettings(rate=args.rate, concurrency=args.concurrency, loop=args.loop, quiet=args.quiet),
        follow_up=FollowUp(config=args.config, confirm_fixed_after=args.confirm_fixed_after),
        intervals=tuple(args.interval), batch=args.batch, tick=args.tick, once=args.once, now=args.now,
        severity=tuple(args.severity), forever=args.forever, distributed=options.distributed_settings(args))
    return campaign_run(settings, stderr_console())


def _choices(items: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    out = [v.strip().lower() for item in items for v in item.split(",") if v.strip()]
    bad = [v for v in out if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}: choose from {', '.join(allowed)}")
    return out


@reports_store_errors
def cmd_findings(args: argparse.Namespace) -> int:
    from pacswatch.campaign import report
    from pacswatch.output import stdout_console
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:
        rows = repo.findings(severities=_choices(args.severity, SEVERITIES, "severity"),
                             statuses=_choices(args.status, STATUSES, "status"),
                             since=options.moment(args.since) if args.since else None)
        if args.scan is not None:  # the endpoints that scan looked at
            if repo.scan(args.scan) is None:  # a mistyped ID is not 'no findings'
                raise ValueError(f"there is no scan {args.scan} in this database (pacswatch scans lists them)")
            seen = {(o["ip"], o["port"]) for o in repo.observations(scan_id=args.scan)}
            rows = [r for r in rows if (r["ip"], r["port"]) in seen]
        shown = report.by_severity(rows)
        if args.format == "table":
            stdout_console().print(report.findings_table(shown))
        elif args.format == "csv":
            report.write_csv(sys.stdout, shown, report.FINDING_COLUMNS)
        else:
            history: dict[int, list] = {}
            for e in repo.events(finding_ids=[r["id"] for r in shown]) if shown else []:
                history.setdefault(e["finding_id"], []).append(
                    {k: e[k] for k in ("at", "kind", "old_severity", "new_severity", "scan_id")})
            report.write_json(sys.stdout, [{**{c: r.get(c) for c in report.FINDING_COLUMNS}, "reasons": r["reasons"],
                                            "history": history.get(r["id"], [])} for r in shown])
    return 0


@reports_store_errors
def cmd_stats(args: argparse.Namespace) -> int:
    from pacswatch.campaign import report
    from pacswatch.output import stdout_console
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:
        stats = repo.stats()
    if args.format == "json":
        report.write_json(sys.stdout, stats)
    else:
        out = stdout_console()
        for table in report.stats_tables(stats):
            out.print(table)
    return 0


@reports_store_errors
def cmd_scans(args: argparse.Namespace) -> int:
    from pacswatch.campaign import report
    from pacswatch.output import stdout_console
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:
        rows = [_shown_scan(row) for row in repo.scans(args.limit)]
    if args.format == "json":
        report.write_json(sys.stdout, rows)
    else:
        stdout_console().print(report.scans_table(rows))
    return 0


def _shown_scan(row: dict) -> dict:
    """A scan as `scans` shows it: a dead scan is `stalled`, not `running`, and a command line
    stored by an older pacswatch has its passwords masked."""
    from pacswatch.campaign.scanrun import shown_status
    from pacswatch.store.engine import mask_passwords

    return {**row, "status": shown_status(row),
            "command": mask_passwords(row["command"]) if row.get("command") else row.get("command")}


@reports_store_errors
def cmd_history(args: argparse.Namespace) -> int:
    from pacswatch.campaign import report
    from pacswatch.findings.lifecycle import explain_all
    from pacswatch.output import shown, stdout_console
    from pacswatch.store.repository import Repository
    from pacswatch.targets import parse_spec, system_resolver

    with Repository.open(args.database) as repo:
        spec = parse_spec(args.endpoint)
        if spec.span is not None:
            raise ValueError("history takes one host (HOST or HOST:PORT), not a network")
        if spec.name is not None and args.no_resolve:
            raise ValueError(f"{spec.name!r} is a host name, and --no-resolve forbids looking names up: give its "
                             "address")
        try:
            if spec.ip is not None:
                ips = [str(spec.ip)]
            else:
                assert spec.name is not None  # parse_spec gives an address or a name
                ips = list(system_resolver(spec.name))
        except OSError as exc:  # socket.gaierror: say which name, not only errno -2
            raise ValueError(f"cannot resolve {spec.name!r} ({exc.strerror or exc}): give an address, "
                             "or a name this machine resolves") from None
        observations, events = [], []
        for ip in ips:
            observations += repo.observations(ip=ip, port=spec.port)
            events += repo.events(ip=ip, port=spec.port)
    # Why each finding changed, in words (missed by scan 12, fixed after a second miss ...).
    events = [{**e, "why": why} for e, why in zip(events, explain_all(events))]
    out: Console = stdout_console()
    if args.format == "json":
        report.write_json(sys.stdout, {"observations": observations, "events": events})
    elif not observations:
        out.print(f"nothing recorded for {args.endpoint}", highlight=False, markup=False)
    else:
        out.print(report.history_table(f"History of {args.endpoint}", observations, events))
        for e in sorted(events, key=lambda e: (e["at"], e["id"])):
            # `why` may quote an analyst's name and reason (a mark): cleaned, never markup.
            out.print(shown(f"{report.when(e['at'])}  {report.endpoint(e['ip'], e['port'])}  {e['why']}"),
                      highlight=False)
    return 0
