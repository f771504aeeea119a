"""The campaign commands: the database, resumable scans, `run`, queries, opt-out and scope.

    pacswatch db upgrade|info|check      migrate / describe / check the database
    pacswatch scan ... [--resume ID]     every scan is stored; a cut-short one is resumed by ID
    pacswatch run [--once]               rescan what is due, until stopped
    pacswatch findings|history|stats|scans
    pacswatch optout add CIDR --contact WHO | list | remove ID
    pacswatch scope add CIDR | list | remove ID

cli.py calls `add_scan_options`, `add_commands` and `dispatch`; `campaign_scan` is the scan.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from rich.console import Console

from pacswatch.campaign import report
from pacswatch.campaign.commands import EXIT_STORE, campaign_scan, cmd_run
from pacswatch.cli_types import contact_url, positive
from pacswatch.identity import DEFAULT_CONTACT_URL
from pacswatch.output import error_line, stdout_console

__all__ = ["add_commands", "add_database_option", "add_no_resolve_option", "add_probe_options", "add_scan_options",
           "campaign_scan", "dispatch", "optout_reason"]

COMMANDS = ("db", "run", "findings", "history", "stats", "scans", "optout", "scope")
SEVERITIES = ("critical", "high", "medium", "low")
STATUSES = ("open", "fixed", "reopened", "opted-out")


def _database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", metavar="URL", help="SQLite path or URL, or postgresql://... (default: "
                   "$PACSWATCH_DATABASE_URL, else pacswatch.db in the user's data directory)")
    p.add_argument("--create-dirs", action="store_true",
                   help="create the directory of the SQLite file if it does not exist (else an error)")


add_database_option = _database_option


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


def _format_option(p: argparse.ArgumentParser, choices=("table", "json")) -> None:
    p.add_argument("--format", choices=choices, default="table",
                   help="table: for a person (default); " + "; ".join(f"{c}: for programs" for c in choices[1:]))


def _no_resolve_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-resolve", action="store_true",
                   help="look up no host name: every host must be given as an address")


add_no_resolve_option = _no_resolve_option


def add_scan_options(scan: argparse.ArgumentParser) -> None:
    _database_option(scan)
    scan.add_argument("--resume", type=positive("scan ID"), metavar="ID", help="continue scan ID where it stopped (same targets, "
                      "ports, seed and probe options; nothing done is probed again)")
    scan.add_argument("--import-masscan", action="append", default=[], metavar="FILE",
                      help="probe the open ports in masscan -oJ or -oL output; repeatable")
    scan.add_argument("--import-zmap", action="append", default=[], metavar="FILE",
                      help="probe the open ports in ZMap CSV output (bare addresses: --ports names the port)")
    scan.add_argument("--keep-all", action="store_true",
                      help="store every record, also of addresses where nothing answered")
    scan.add_argument("--no-attribute", action="store_true",
                      help="do not look up the owners of exposed addresses when the scan ends")
    _confirm_option(scan)
    _notify_config_option(scan)
    _no_resolve_option(scan)
    # None: a new scan takes 200, a resumed one what it was started with (unless given).
    scan.set_defaults(rate=None, concurrency=None)


def _notify_config_option(p: argparse.ArgumentParser) -> None:
    # The same option as the notify commands': the resolver that attributes what a scan found
    # exposed and [campaign] confirm_fixed_after are read from it.
    p.add_argument("--config", metavar="FILE", help="attribution and notification settings (TOML; default "
                   "$PACSWATCH_NOTIFY_CONFIG): [attribution] and [campaign] are read")


def _confirm_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--confirm-fixed-after", metavar="DURATION", default=None,
                   help="a finding missed by one scan is fixed only when a second scan misses it at least this "
                        "much later, e.g. 6h, 30m; 0: the next miss (default: [campaign] confirm_fixed_after in "
                        "the notify config, else 6h)")


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


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """The probe's options, for `scan`, `probe` (cli.py) and `run`."""
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


def add_commands(sub) -> None:
    db = sub.add_parser("db", help="the database: upgrade (migrate), info, check")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "migrate a PostgreSQL database to this version's schema (an SQLite file "
                                   "is migrated when opened, a copy kept beside it)"),
                       ("info", "where the database is and its schema revision"),
                       ("check", "read the whole database and report damage and broken links (writes nothing); "
                                 "exit 1 when something is wrong")):
        _database_option(db_sub.add_parser(name, help=text))
    db_sub.choices["check"].add_argument("--quick", action="store_true",
                                         help="SQLite: quick_check instead of the full integrity_check")

    run = sub.add_parser("run", help="rescan services as they fall due, until stopped")
    _database_option(run)
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument("--tick", type=positive("tick", float), default=60.0, metavar="S",
                     help="seconds between looks for due services when none is due (default 60)")
    run.add_argument("--batch", type=positive("batch size"), default=1000, metavar="N",
                     help="services per rescan (default 1000)")
    run.add_argument("--interval", action="append", default=[], metavar="CLASS=DURATION",
                     help="rescan interval, e.g. critical=6h; classes critical, high, medium, low, fixed, none")
    run.add_argument("--rate", type=positive("rate", float), default=200.0, metavar="N",
                     help="new connections per second, all probes together (default 200)")
    run.add_argument("--concurrency", type=positive("concurrency"), default=200, metavar="N",
                     help="endpoints probed at once (default 200)")
    run.add_argument("--web-ports", default=None, metavar="LIST", help="ports probed as HTTP(S) instead of DICOM")
    run.add_argument("--exclude", action="append", default=[], metavar="FILE",
                     help="never scan what this file lists (addresses, CIDRs, ranges); repeatable")
    run.add_argument("--scope", metavar="FILE", help="refuse anything outside the networks this file lists")
    run.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                     help="event loop: uvloop when installed (auto), or the standard one")
    run.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    _confirm_option(run)
    _notify_config_option(run)
    run.add_argument("--now", nargs="?", const="", default=None, metavar="SELECTOR",
                     help="rescan at once the known services at SELECTOR (an address, ADDRESS:PORT, CIDR or range; "
                          "none: every one that --severity names), then exit (with --forever, go on as run)")
    run.add_argument("--severity", action="append", default=[], metavar="LIST",
                     help="with --now: only services whose open finding has this severity (critical,high,...)")
    run.add_argument("--forever", action="store_true", help="with --now: after the rescan, run as usual until stopped")
    add_probe_options(run)

    findings = sub.add_parser("findings", help="exposures and their lifecycle")
    _database_option(findings)
    findings.add_argument("--severity", action="append", default=[], metavar="LIST", help="critical,high,...")
    findings.add_argument("--status", action="append", default=[], metavar="LIST", help="open,fixed,reopened,opted-out")
    findings.add_argument("--since", metavar="WHEN", help="seen or fixed since: a date, a time, or an age (7d)")
    findings.add_argument("--scan", type=positive("scan ID"), metavar="ID",
                          help="only endpoints scan ID looked at (what a scan's table left out)")
    _format_option(findings, ("table", "json", "csv"))

    history = sub.add_parser("history", help="every observation and change of an endpoint or host")
    _database_option(history)
    history.add_argument("endpoint", metavar="HOST[:PORT]", help="an address or a name, with or without a port")
    _no_resolve_option(history)
    _format_option(history)

    stats = sub.add_parser("stats", help="counts by severity, product, port; exposed studies and patients")
    _database_option(stats)
    _format_option(stats)

    scans = sub.add_parser("scans", help="the scans in the database (IDs for --resume)")
    _database_option(scans)
    scans.add_argument("--limit", type=positive("limit"), default=50, metavar="N",
                       help="the N most recent scans (default 50)")
    _format_option(scans)

    for name, text in (("optout", "owners who asked not to be scanned: never contacted"),
                       ("scope", "networks this installation is authorised to scan")):
        parser = sub.add_parser(name, help=text)
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="add a network")
        add.add_argument("cidr", metavar="CIDR", help="an address or a network, e.g. 198.51.100.0/24")
        if name == "optout":
            add.add_argument("--contact", required=True, help="who asked (e-mail, ticket)")
            add.add_argument("--requested", metavar="DATE", help="when they asked (default: now)")
        add.add_argument("--note", help="free text kept with the entry")
        _database_option(add)
        listing = actions.add_parser("list", help="show the entries")
        _database_option(listing)
        _format_option(listing)
        remove = actions.add_parser("remove", help="remove an entry")
        remove.add_argument("entry", type=positive("entry ID"), metavar="ID", help="the entry's ID (see list)")
        _database_option(remove)


_stdout = stdout_console


def _moment(text: str) -> datetime:
    from pacswatch.findings.schedule import parse_duration

    try:
        return datetime.now(timezone.utc) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2024-05-01), a time (2024-05-01T12:00) nor an age (7d)") from None
    # UTC, as stored: SQLite compares the text of the times and would ignore another zone.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _choices(items: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    out = [v.strip().lower() for item in items for v in item.split(",") if v.strip()]
    bad = [v for v in out if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}: choose from {', '.join(allowed)}")
    return out


def dispatch(args: argparse.Namespace, err: Console | None = None) -> int | None:
    """Run a campaign command; None if `args.command` is not one (cli.py handles it)."""
    if args.command not in COMMANDS:
        return None
    err = err or Console(stderr=True)
    # The store (and SQLAlchemy with it) is imported by the commands that open it, not by
    # building the parser: `--help` and usage errors stay quick.
    from pacswatch.store.errors import StoreError
    from pacswatch.store.repository import Repository

    try:
        if args.command == "db" and args.db_command == "check":
            return _db_check(args)
        if args.command == "db":
            from pacswatch.store.engine import describe

            repo = Repository.open(args.database, upgrade=args.db_command == "upgrade")
            try:
                info = describe(repo.engine)
            finally:
                repo.close()
            for key in ("url", "backend", "revision", "state"):
                print(f"{key}: {info[key]}")
            return 0
        if args.command == "run":
            return cmd_run(args, err)
        with Repository.open(args.database) as repo:
            return _query(args, repo)
    except StoreError as exc:
        err.print(error_line(f"pacswatch {args.command}:", exc), highlight=False, soft_wrap=True)
        return EXIT_STORE


def _db_check(args: argparse.Namespace) -> int:
    """`pacswatch db check`: 0 when sound, 1 when something is wrong (a database that does not
    even open is reported by the caller, like every command's, with the same exit code)."""
    from pacswatch.campaign.scanrun import STALE, shown_status
    from pacswatch.store.check import check_database
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:  # stalled as `scans` says it: the same scan, the same word
        report = check_database(repo, stale=STALE, quick=args.quick,
                                stalled=lambda scan: shown_status(scan) == "stalled")
        url = repo.engine.url.render_as_string(hide_password=True)
    print(f"checked {url}: {', '.join(report.checked)}")
    for problem in report.problems:
        print(f"problem: {problem}")
        for example in problem.examples:
            print(f"  {example}")
    for note in report.notes:
        print(f"note: {note}")
    if report.sound:
        print("sound")
    else:
        salvage = " (SQLite: `sqlite3 FILE .recover` salvages what is readable)" if url.startswith("sqlite") else ""
        print(f"{len(report.problems)} problem(s): restore the database from a backup{salvage}")
    return 0 if report.sound else EXIT_STORE


def _query(args: argparse.Namespace, repo) -> int:
    out = _stdout()
    if args.command == "findings":
        rows = repo.findings(severities=_choices(args.severity, SEVERITIES, "severity"),
                             statuses=_choices(args.status, STATUSES, "status"),
                             since=_moment(args.since) if args.since else None)
        if args.scan is not None:  # the endpoints that scan looked at
            if repo.scan(args.scan) is None:  # a mistyped ID is not 'no findings'
                raise ValueError(f"there is no scan {args.scan} in this database (pacswatch scans lists them)")
            seen = {(o["ip"], o["port"]) for o in repo.observations(scan_id=args.scan)}
            rows = [r for r in rows if (r["ip"], r["port"]) in seen]
        rows = report.by_severity(rows)
        if args.format == "table":
            out.print(report.findings_table(rows))
        elif args.format == "csv":
            report.write_csv(sys.stdout, rows, report.FINDING_COLUMNS)
        else:
            history: dict[int, list] = {}
            for e in repo.events(finding_ids=[r["id"] for r in rows]) if rows else []:
                history.setdefault(e["finding_id"], []).append(
                    {k: e[k] for k in ("at", "kind", "old_severity", "new_severity", "scan_id")})
            report.write_json(sys.stdout, [{**{c: r.get(c) for c in report.FINDING_COLUMNS}, "reasons": r["reasons"],
                                            "history": history.get(r["id"], [])} for r in rows])
        return 0
    if args.command == "history":
        return _history(args, repo, out)
    if args.command == "stats":
        stats = repo.stats()
        if args.format == "json":
            report.write_json(sys.stdout, stats)
        else:
            for table in report.stats_tables(stats):
                out.print(table)
        return 0
    if args.command == "scans":
        rows = [_shown_scan(row) for row in repo.scans(args.limit)]
        if args.format == "json":
            report.write_json(sys.stdout, rows)
        else:
            out.print(report.scans_table(rows))
        return 0
    return _entries(args, repo, out)


def _shown_scan(row: dict) -> dict:
    """A scan as `scans` shows it: a dead scan is `stalled`, not `running`, and a command line
    stored by an older pacswatch has its passwords masked."""
    from pacswatch.campaign.scanrun import shown_status
    from pacswatch.store.engine import mask_passwords

    return {**row, "status": shown_status(row),
            "command": mask_passwords(row["command"]) if row.get("command") else row.get("command")}


def _history(args: argparse.Namespace, repo, out: Console) -> int:
    from pacswatch.targets import parse_spec, system_resolver

    spec = parse_spec(args.endpoint)
    if spec.span is not None:
        raise ValueError("history takes one host (HOST or HOST:PORT), not a network")
    if spec.name is not None and args.no_resolve:
        raise ValueError(f"{spec.name!r} is a host name, and --no-resolve forbids looking names up: give its address")
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
    from pacswatch.findings.lifecycle import explain_all

    events = [{**e, "why": why} for e, why in zip(events, explain_all(events))]
    if args.format == "json":
        report.write_json(sys.stdout, {"observations": observations, "events": events})
    elif not observations:
        out.print(f"nothing recorded for {args.endpoint}", highlight=False, markup=False)
    else:
        out.print(report.history_table(f"History of {args.endpoint}", observations, events))
        for e in sorted(events, key=lambda e: (e["at"], e["id"])):
            out.print(f"{report.when(e['at'])}  {report.endpoint(e['ip'], e['port'])}  {e['why']}",
                      highlight=False, markup=False)
    return 0


def _entries(args: argparse.Namespace, repo, out: Console) -> int:
    from pacswatch.campaign.scope import normalize_network

    optout = args.command == "optout"
    if args.action == "add":
        if optout:  # its findings close now (history kept); notify checks the list again before sending
            from pacswatch.campaign.optouts import add_optout

            requested = _moment(args.requested) if args.requested else None
            added = add_optout(repo, args.cidr, args.contact, requested_at=requested, note=args.note)
            print(f"{args.command} entry {added.entry}: {added.cidr}")
            print(f"{len(added.closed)} finding(s) closed as opted-out; no notice will name them or go to "
                  f"{args.contact}")
            return 0
        cidr = normalize_network(args.cidr)
        print(f"{args.command} entry {repo.add_scope(cidr, args.note)}: {cidr}")
        return 0
    if args.action == "remove":
        removed = repo.remove_optout(args.entry) if optout else repo.remove_scope(args.entry)
        if not removed:
            raise ValueError(f"there is no {args.command} entry {args.entry}")
        print(f"{args.command} entry {args.entry} removed")
        return 0
    rows = repo.optouts() if optout else repo.scope_entries()
    columns = ("id", "cidr", "contact", "requested_at", "added_at", "added_by", "note") if optout else \
        ("id", "cidr", "added_at", "added_by", "note")
    if args.format == "json":
        report.write_json(sys.stdout, rows)
    else:
        out.print(report.entries_table("Opt-out list" if optout else "Scope", rows, columns))
    return 0
