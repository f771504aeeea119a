"""`pacswatch scan` and `pacswatch run` as the command line runs them: parameters from the
arguments (or from the database on --resume), the plan under today's opt-out list and scope,
a ScanJob with its output, and the end-of-scan summary of changes."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from pacswatch.campaign import report
from pacswatch.output import OutputError, error_line, shown
from pacswatch.safefile import open_stream

PROBE_FIELDS = ("timeout", "no_find", "find_limit", "no_ae_guess", "ae_guess", "calling_ae", "contact_url",
                "tls_ports", "try_default_credentials", "check_random_ports", "random_port_range")
EXIT_STORE = 1
EXIT_INTERRUPTED = 130


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def scan_parameters(args: argparse.Namespace) -> dict:
    """What a new scan stores: enough to rebuild its plan and probes on --resume, from any cwd."""
    from pacswatch.probes.registry import ProbeSelector
    from pacswatch.targets import DEFAULT_DICOM_PORTS, parse_ports

    if not args.targets and not args.import_masscan and not args.import_zmap:
        raise ValueError("give targets, --import-masscan/--import-zmap files, or --resume ID")
    selector = ProbeSelector.from_args(args.web_ports)
    if args.ports:
        ports = list(parse_ports(args.ports))
    else:
        ports = list(selector.default_ports(DEFAULT_DICOM_PORTS)) if args.targets else []
    return {
        "targets": ["@" + _absolute(t.strip()[1:]) if t.strip().startswith("@") else t for t in args.targets],
        "ports": ports, "web_ports": args.web_ports,
        "masscan": [_absolute(p) for p in args.import_masscan], "zmap": [_absolute(p) for p in args.import_zmap],
        "exclude": [_absolute(p) for p in args.exclude], "scope": _absolute(args.scope) if args.scope else None,
        "seed": args.seed if args.seed is not None else secrets.randbits(63),
        "probe": {k: getattr(args, k) for k in PROBE_FIELDS},
        "rate": args.rate or 200.0, "concurrency": args.concurrency or 200, "keep_all": bool(args.keep_all),
        "no_resolve": bool(getattr(args, "no_resolve", False)),  # a resume looks up no name either
    }


# What a scan stores to rebuild its plan and probes (scan_parameters): fixed for its life.
PLAN_FIELDS = ("ports", "web_ports", "exclude", "scope", "seed", "keep_all", "no_resolve")


def fixed_on_resume(args: argparse.Namespace, defaults: argparse.Namespace) -> list[str]:
    """The plan and probe options given with --resume (different from their `defaults`, the scan
    command's as its parser declares them), which a resumed scan cannot take: its stored
    parameters decide. Silently ignored, `--ports 104` resumed the old ports, and the operator
    believed otherwise."""
    return [f"--{name.replace('_', '-')}" for name in (*PLAN_FIELDS, *PROBE_FIELDS)
            if getattr(args, name, None) != getattr(defaults, name, None)]


def _plan_builder(repo, parameters: dict, targets=None):
    from pacswatch.campaign.scanrun import plan_from_parameters
    from pacswatch.campaign.scope import LiveBlocklist, campaign_scope

    # Read now, not when the scan started, and followed while it runs: an opt-out added since
    # applies to what is left, one added during the scan to every endpoint it takes after.
    blocklist = LiveBlocklist(repo, parameters.get("exclude") or ())
    scope = campaign_scope(parameters.get("scope"), repo.scope_entries())
    return plan_from_parameters(parameters, blocklist, scope, targets)


def _job(parameters: dict, args: argparse.Namespace, err: Console, **kw):
    from pacswatch.probes.options import probe_options
    from pacswatch.probes.registry import ProbeSelector
    from pacswatch.scan.job import ScanJob

    options = probe_options(argparse.Namespace(**parameters["probe"]))
    selector = ProbeSelector.from_args(parameters.get("web_ports"))
    quiet = getattr(args, "quiet", False)
    rate = args.rate or parameters["rate"]
    concurrency = args.concurrency or parameters["concurrency"]
    workers = getattr(args, "workers", 1)
    # What a worker process needs, besides the job's rate, concurrency and loop, to probe as this
    # scan does (scan/worker.py).
    worker_settings = {"probe": parameters["probe"], "web_ports": parameters.get("web_ports")}
    return options, ScanJob(plan=None, probe_for=selector.probe_for, options=options, rate=rate,
                            concurrency=concurrency, stderr=err,
                            show_progress=False if (getattr(args, "no_progress", False) or quiet) else None,
                            show_summary=not quiet, event_loop=args.loop, workers=workers,
                            worker_settings=worker_settings, **kw)


def campaign_scan(args: argparse.Namespace, err: Console, *, defaults: argparse.Namespace) -> int:
    """`pacswatch scan`: a new scan, or `--resume ID`, stored in the database as it runs.
    `defaults`: the scan command's arguments with nothing given (cli.py's parser, passed in since
    the command line sits above the campaign), for fixed_on_resume."""
    from pacswatch.campaign.scanrun import check_resumable, check_same_plan, execute, start_scan
    from pacswatch.findings.schedule import POLICY_SETTING, RescanPolicy
    from pacswatch.scan.workers import WorkerFailed
    from pacswatch.store.engine import masked_command
    from pacswatch.store.errors import StoreError
    from pacswatch.store.repository import Repository

    resuming = args.resume is not None
    confirm = _confirm_fixed_after(args)  # a bad value fails before the database is opened
    if resuming and (args.targets or args.import_masscan or args.import_zmap):
        raise ValueError(f"--resume {args.resume} takes no targets: scan {args.resume} keeps the ones it started with")
    if resuming and (fixed := fixed_on_resume(args, defaults)):
        raise ValueError(f"--resume {args.resume} keeps the plan and probe settings scan {args.resume} started with, "
                         f"so {', '.join(fixed)} would be ignored: leave {'it' if len(fixed) == 1 else 'them'} out, or "
                         "start a new scan (--rate, --concurrency, --workers and the output options may change)")
    parameters = targets = None
    if not resuming:  # bad input fails before the database is opened
        from pacswatch.campaign.scanrun import targets_from_parameters

        try:  # a long target file, or names resolving slowly: Ctrl-C here is one line too
            parameters = scan_parameters(args)
            targets = targets_from_parameters(parameters)
        except KeyboardInterrupt:
            err.print("pacswatch scan: interrupted while reading the targets; nothing was scanned",
                      highlight=False, markup=False)
            return EXIT_INTERRUPTED
    out_file = None
    output_failed = False
    scan_id = args.resume
    outcome = None
    probing = False  # the scan is under way: a store failure from here on leaves it resumable
    try:
        with Repository.open(args.database) as repo:
            if resuming:
                scan = check_resumable(repo, args.resume)
                parameters = scan["parameters"]
                plan = _plan_builder(repo, parameters)
                check_same_plan(scan, plan)
            else:
                assert parameters is not None  # read above, before the database was opened
                plan = _plan_builder(repo, parameters, targets)
            # Appending on resume: the first run's records stay, the file ends up with them all.
            # Never through a symbolic link planted at the path (safefile.py).
            out_file = open_stream(args.output, append=resuming) if args.output else None
            scan_id = args.resume if resuming else start_scan(
                repo, plan, parameters, command=masked_command(["pacswatch", *sys.argv[1:]]))
            options, job = _job(parameters, args, err, output=out_file or sys.stdout, output_format=_format(args),
                                open_only=args.open_only, top=args.top or None, scan_id=scan_id)
            if not args.quiet:
                _banner(err, scan_id, plan, job, options, resumed=len(repo.completed(scan_id)) if resuming else None)
            # The intervals the last `run` set for this installation (its services' schedule).
            policy = RescanPolicy.from_json(repo.setting(POLICY_SETTING), confirm)
            probing = True
            outcome = execute(repo, scan_id, plan, job, policy=policy, keep_all=bool(parameters.get("keep_all")))
            probing = False
            if not args.quiet:
                report.print_changes(err, outcome, top=args.top or None)
            if outcome.status == "finished" and not args.no_attribute:
                _attribute_after(repo, outcome, err, quiet=args.quiet, config=args.config)
            if outcome.status != "finished":  # Ctrl-C, SIGTERM: say how to go on, even with --quiet
                err.print(f"{outcome.remaining} endpoints left: pacswatch scan --resume {scan_id}", highlight=False)
            return EXIT_INTERRUPTED if outcome.stats.interrupted else 0
    except KeyboardInterrupt:  # Ctrl-C outside the probing (opening the database, attributing)
        if outcome is not None and outcome.status == "finished":  # only the owners were left to look up
            err.print("pacswatch scan: interrupted after the scan finished; owners: pacswatch attribute",
                      highlight=False, markup=False)
        else:
            left = f": pacswatch scan --resume {scan_id}" if scan_id is not None else ""
            err.print(f"pacswatch scan: interrupted{left}", highlight=False, markup=False)
        return EXIT_INTERRUPTED
    except StoreError as exc:
        # Failed mid-scan (a full disk): what was stored is done, the rest waits for a resume.
        resume = f"; once that is fixed: pacswatch scan --resume {scan_id}" if probing else ""
        err.print(error_line("pacswatch scan:", f"{exc}{resume}"), highlight=False, soft_wrap=True)
        return EXIT_STORE
    except WorkerFailed as exc:
        err.print(error_line("pacswatch scan:", f"{exc}; what it had in flight is not done: "
                             f"pacswatch scan --resume {scan_id}"), highlight=False, soft_wrap=True)
        return 1
    except OutputError as exc:
        output_failed = True
        err.print(error_line("pacswatch scan:", f"{exc}; the records it lacks are not counted done: "
                             f"pacswatch scan --resume {scan_id}"), highlight=False, soft_wrap=True)
        if out_file is None:  # stdout: nothing more can go there, not even at exit
            _silence_stdout()
        return 1
    finally:
        if out_file is not None:
            try:
                out_file.close()
            except OSError:  # its buffer holds what could not be written: reported above
                if not output_failed:
                    raise


def _format(args: argparse.Namespace) -> str:
    """--format, or by default: a table for a person at a terminal, JSON Lines for a file or a
    pipe. Decided here, not in the parser, for every caller (`pacswatch demo` scans through here)."""
    if args.format is not None:
        return args.format
    return "table" if not args.output and sys.stdout.isatty() else "jsonl"


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the interpreter flushes it at exit and would complain again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _attribute_after(repo, outcome, err: Console, *, quiet: bool, config: str | None) -> None:
    """Owners of what the scan found exposed. A failure here is reported, never fatal: the
    scan's records are stored already, and `pacswatch attribute` can be run again later."""
    from pacswatch.campaign.scope import contact_check
    from pacswatch.notify import config as notify_config
    from pacswatch.notify.service import attribute_after_scan

    try:
        line = attribute_after_scan(repo.engine, notify_config.load(config), outcome.kept,
                                    may_contact=contact_check(repo))
    except Exception as exc:  # noqa: BLE001 - any failure of a follow-up step
        err.print(Text.assemble(("attribution after the scan failed: ", "yellow"), shown(exc),
                                " (run: pacswatch attribute)"), highlight=False)
        return
    if line and not quiet:
        err.print(line, highlight=False, markup=False)


def _banner(err: Console, scan_id: int, plan, job, options, resumed: int | None) -> None:
    from pacswatch import __version__
    from pacswatch.scan.job import runtime_description

    what = f"scan {scan_id}" if resumed is None else f"resuming scan {scan_id} ({resumed} of {plan.size} done)"
    err.print(f"pacswatch {__version__}: {what}: {plan.size} endpoints ({plan.distinct_ports} ports), seed {plan.seed}, "
              f"rate {job.rate:g}/s, concurrency {job.concurrency}, calling AE {options.identity.calling_ae}; "
              f"{runtime_description(job.event_loop, job.workers)}",
              highlight=False, markup=False)
    if options.random_ports:
        lo, hi = options.random_port_range
        err.print(f"--check-random-ports is on: {options.random_ports} random ports of {lo}-{hi} are tried on every "
                  "address that accepts TCP (rate-limited, recorded on the record)", highlight=False, markup=False)
    if options.try_default_credentials:
        err.print("[bold yellow]--try-default-credentials is on: documented default credentials will be tried "
                  "(login attempts), and this is recorded.[/]")


def _confirm_fixed_after(args: argparse.Namespace):
    """How long a missed finding waits for the miss that fixes it (findings/lifecycle.py):
    --confirm-fixed-after, else [campaign] confirm_fixed_after in the notify config, else 6 h."""
    from pacswatch.findings.lifecycle import CONFIRM_FIXED_AFTER
    from pacswatch.findings.schedule import parse_confirm_after

    text, where = getattr(args, "confirm_fixed_after", None), "--confirm-fixed-after"
    if text is None:
        from pacswatch.notify import config as notify_config

        text, where = notify_config.load(args.config).confirm_fixed_after, "[campaign] confirm_fixed_after"
    try:
        return CONFIRM_FIXED_AFTER if text is None else parse_confirm_after(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def cmd_run(args: argparse.Namespace, err: Console) -> int:
    from pacswatch.campaign.runloop import RunLoop, parse_selector
    from pacswatch.findings.schedule import RescanPolicy
    from pacswatch.store.repository import Repository

    if args.now is None and (args.severity or args.forever):
        raise ValueError("--severity and --forever go with --now")
    selector = parse_selector(args.now, args.severity) if args.now is not None else None
    confirm = _confirm_fixed_after(args)
    policy = RescanPolicy.from_overrides(args.interval, confirm)
    parameters = {"web_ports": args.web_ports, "exclude": [_absolute(p) for p in args.exclude],
                  "scope": _absolute(args.scope) if args.scope else None,
                  "probe": {k: getattr(args, k) for k in PROBE_FIELDS}, "rate": args.rate,
                  "concurrency": args.concurrency, "keep_all": False}
    repo = Repository.open(args.database)

    def on_outcome(outcome) -> None:
        if not args.quiet:
            report.print_changes(err, outcome)
        _attribute_after(repo, outcome, err, quiet=args.quiet, config=args.config)

    loop = RunLoop(repo, make_job=lambda stored: _job(stored, args, err, output=None)[1],
                   build_plan=lambda p: _plan_builder(repo, p), parameters=parameters, policy=policy,
                   batch=args.batch, tick=args.tick, log=(lambda _: None) if args.quiet else
                   (lambda text: err.print(text, highlight=False, markup=False)), on_outcome=on_outcome)
    try:
        loop.replan()  # services scheduled under other intervals follow this run's at once
        if selector is None:
            interrupted = loop.forever(once=args.once)
        else:
            outcomes = loop.rescan_now(selector)
            if not outcomes:
                asked = " ".join(["--now", *([args.now] if args.now else []), *(f"--severity {s}" for s in args.severity)])
                err.print(f"pacswatch run: no known service matches {asked} (pacswatch scan looks at new ones)",
                          highlight=False, markup=False)
                return 1
            interrupted = outcomes[-1].stats.interrupted
            if args.forever and not interrupted:
                interrupted = loop.forever(once=args.once)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        repo.close()
    return 130 if interrupted else 0
