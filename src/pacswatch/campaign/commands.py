"""`pacswatch scan` and `pacswatch run` as the command line runs them: parameters from its
settings (settings.py), or from the database on --resume, the plan under today's opt-out list and
scope, a ScanJob with its output, and the end-of-scan summary of changes."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from pacswatch.campaign import report
from pacswatch.campaign.settings import (
    FollowUp,
    OutputSettings,
    PaceSettings,
    RunSettings,
    ScanPlanSettings,
    ScanSettings,
)
from pacswatch.output import OutputError, error_line, shown
from pacswatch.probes.options import ProbeSettings
from pacswatch.safefile import open_stream

EXIT_STORE = 1
EXIT_INTERRUPTED = 130


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def scan_parameters(plan: ScanPlanSettings, probe: ProbeSettings, pace: PaceSettings) -> dict:
    """What a new scan stores: enough to rebuild its plan and probes on --resume, from any cwd."""
    from pacswatch.probes.registry import ProbeSelector
    from pacswatch.targets import DEFAULT_DICOM_PORTS, parse_ports

    if not plan.targets and not plan.masscan and not plan.zmap:
        raise ValueError("give targets, --import-masscan/--import-zmap files, or --resume ID")
    selector = ProbeSelector.for_web_ports(plan.web_ports)
    if plan.ports:
        ports = list(parse_ports(plan.ports))
    else:
        ports = list(selector.default_ports(DEFAULT_DICOM_PORTS)) if plan.targets else []
    return {
        "targets": ["@" + _absolute(t.strip()[1:]) if t.strip().startswith("@") else t for t in plan.targets],
        "ports": ports, "web_ports": plan.web_ports,
        "masscan": [_absolute(p) for p in plan.masscan], "zmap": [_absolute(p) for p in plan.zmap],
        "exclude": [_absolute(p) for p in plan.exclude], "scope": _absolute(plan.scope) if plan.scope else None,
        "seed": plan.seed if plan.seed is not None else secrets.randbits(63),
        "probe": probe.stored(),
        # The command line gives a new scan its default rate and concurrency when none is given.
        "rate": pace.rate, "concurrency": pace.concurrency, "keep_all": plan.keep_all,
        "no_resolve": plan.no_resolve,  # a resume looks up no name either
    }


def fixed_on_resume(plan: ScanPlanSettings, probe: ProbeSettings) -> list[str]:
    """The plan and probe options given with --resume (set, or different from their defaults),
    which a resumed scan cannot take: its stored parameters decide. Silently ignored,
    `--ports 104` resumed the old ports, and the operator believed otherwise."""
    from pacswatch.probes.registry import declared_options, probe_settings

    defaults = probe_settings()
    return plan.given() + [f"--{o.name}" for o in declared_options() if probe[o.key] != defaults[o.key]]


def build_plan(repo, parameters: dict, targets=None):
    """The plan of a scan's stored `parameters` (`targets`: already read, for a new scan) under
    the opt-out list and scope in the database: a local scan's, and a distributed worker's."""
    from pacswatch.campaign.scanrun import plan_from_parameters
    from pacswatch.campaign.scope import LiveBlocklist, campaign_scope

    # Read now, not when the scan started, and followed while it runs: an opt-out added since
    # applies to what is left, one added during the scan to every endpoint it takes after.
    blocklist = LiveBlocklist(repo, parameters.get("exclude") or ())
    scope = campaign_scope(parameters.get("scope"), repo.scope_entries())
    return plan_from_parameters(parameters, blocklist, scope, targets)


def _job(parameters: dict, pace: PaceSettings, err: Console, **kw):
    """The ScanJob of a scan's stored `parameters`, at the `pace` given (else the stored one)."""
    from pacswatch.probes.registry import ProbeSelector, probe_options, probe_settings
    from pacswatch.scan.job import ScanJob

    options = probe_options(probe_settings(parameters["probe"]))
    selector = ProbeSelector.for_web_ports(parameters.get("web_ports"))
    rate = pace.rate or parameters["rate"]
    concurrency = pace.concurrency or parameters["concurrency"]
    # What a worker process needs, besides the job's rate, concurrency and loop, to probe as this
    # scan does (scan/worker_main.py).
    worker_settings = {"probe": parameters["probe"], "web_ports": parameters.get("web_ports")}
    return options, ScanJob(plan=None, probe_for=selector.probe_for, options=options, rate=rate,
                            concurrency=concurrency, stderr=err,
                            show_progress=False if (pace.no_progress or pace.quiet) else None,
                            show_summary=not pace.quiet, event_loop=pace.loop, workers=pace.workers,
                            worker_settings=worker_settings, **kw)


def campaign_scan(settings: ScanSettings, err: Console) -> int:
    """`pacswatch scan`: a new scan, or the resume of scan `settings.resume`, stored in the
    database as it runs."""
    from pacswatch.campaign.scanrun import check_resumable, check_same_plan, execute, start_scan
    from pacswatch.findings.schedule import POLICY_SETTING, RescanPolicy
    from pacswatch.scan.worker_pool import WorkerFailed
    from pacswatch.store.engine import masked_command
    from pacswatch.store.errors import StoreError
    from pacswatch.store.repository import Repository

    plan_given, pace, output, follow_up = settings.plan, settings.pace, settings.output, settings.follow_up
    resuming = settings.resume is not None
    confirm = confirm_fixed_after(follow_up)  # a bad value fails before the database is opened
    if resuming and (plan_given.targets or plan_given.masscan or plan_given.zmap):
        raise ValueError(f"--resume {settings.resume} takes no targets: scan {settings.resume} keeps the ones it "
                         "started with")
    if resuming and (fixed := fixed_on_resume(plan_given, settings.probe)):
        raise ValueError(f"--resume {settings.resume} keeps the plan and probe settings scan {settings.resume} "
                         "started with, "
                         f"so {', '.join(fixed)} would be ignored: leave {'it' if len(fixed) == 1 else 'them'} out, or "
                         "start a new scan (--rate, --concurrency, --workers and the output options may change)")
    parameters = targets = None
    if not resuming:  # bad input fails before the database is opened
        from pacswatch.campaign.scanrun import targets_from_parameters

        try:  # a long target file, or names resolving slowly: Ctrl-C here is one line too
            parameters = scan_parameters(plan_given, settings.probe, pace)
            targets = targets_from_parameters(parameters)
        except KeyboardInterrupt:
            err.print("pacswatch scan: interrupted while reading the targets; nothing was scanned",
                      highlight=False, markup=False)
            return EXIT_INTERRUPTED
    out_file = None
    output_failed = False
    scan_id = settings.resume
    outcome = None
    probing = False  # the scan is under way: a store failure from here on leaves it resumable
    try:
        with Repository.open(settings.database) as repo:
            if resuming:
                assert scan_id is not None
                scan = check_resumable(repo, scan_id)
                parameters = scan["parameters"]
                plan = build_plan(repo, parameters)
                check_same_plan(scan, plan)
            else:
                assert parameters is not None  # read above, before the database was opened
                plan = build_plan(repo, parameters, targets)
            # Appending on resume: the first run's records stay, the file ends up with them all.
            # Never through a symbolic link planted at the path (safefile.py).
            out_file = open_stream(output.path, append=resuming) if output.path else None
            scan_id = settings.resume if settings.resume is not None else start_scan(
                repo, plan, parameters, command=masked_command(["pacswatch", *sys.argv[1:]]))
            options, job = _job(parameters, pace, err, output=out_file or sys.stdout, output_format=_format(output),
                                open_only=output.open_only, top=output.top, scan_id=scan_id)
            if not pace.quiet:
                _banner(err, scan_id, plan, job, options, resumed=len(repo.completed(scan_id)) if resuming else None)
            # The intervals the last `run` set for this installation (its services' schedule).
            policy = RescanPolicy.from_json(repo.setting(POLICY_SETTING), confirm)
            probing = True
            outcome = execute(repo, scan_id, plan, job, policy=policy, keep_all=bool(parameters.get("keep_all")))
            probing = False
            if not pace.quiet:
                report.print_changes(err, outcome, top=output.top)
            if outcome.status == "finished" and follow_up.attribute:
                attribute_after(repo, outcome.kept, err, quiet=pace.quiet, config=follow_up.config)
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


def _format(output: OutputSettings) -> str:
    """--format, or by default: a table for a person at a terminal, JSON Lines for a file or a
    pipe. Decided here, not in the parser, for every caller (`pacswatch demo` scans through here)."""
    if output.format is not None:
        return output.format
    return "table" if not output.path and sys.stdout.isatty() else "jsonl"


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the interpreter flushes it at exit and would complain again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def attribute_after(repo, records, err: Console, *, quiet: bool, config: str | None) -> None:
    """Owners of what the scan found exposed (`records`: what it kept). A failure here is
    reported, never fatal: the scan's records are stored already, and `pacswatch attribute` can
    be run again later. A local scan, a followed distributed scan and the worker that ends a
    detached one (`attribute_stored`) all come here."""
    if not any(r.severity for r in records):
        # Nothing exposed, no owner to look up (attribute_after_scan would return at once): the
        # attribution and notify modules are not imported for it (~40 ms of a small scan).
        return
    from pacswatch.campaign.scope import contact_check
    from pacswatch.notify import config as notify_config
    from pacswatch.notify.service import attribute_after_scan

    try:
        line = attribute_after_scan(repo.engine, notify_config.load(config), records,
                                    may_contact=contact_check(repo))
    except Exception as exc:  # noqa: BLE001 - any failure of a follow-up step
        err.print(Text.assemble(("attribution after the scan failed: ", "yellow"), shown(exc),
                                " (run: pacswatch attribute)"), highlight=False)
        return
    if line and not quiet:
        err.print(line, highlight=False, markup=False)


def attribute_stored(repo, scan_id: int) -> None:
    """A distributed worker's `after_scan` (it ended a --detach scan): the owners of what scan
    `scan_id` stored, with this machine's notify configuration ($PACSWATCH_NOTIFY_CONFIG); the
    line goes to the worker's standard error."""
    from pacswatch.distributed.follow import stored_records

    attribute_after(repo, stored_records(repo, [scan_id]), Console(stderr=True), quiet=False, config=None)


def _banner(err: Console, scan_id: int, plan, job, options, resumed: int | None) -> None:
    from pacswatch import __version__
    from pacswatch.scan.eventloop import runtime_description

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


def confirm_fixed_after(follow_up: FollowUp):
    """How long a missed finding waits for the miss that fixes it (findings/lifecycle.py):
    --confirm-fixed-after, else [campaign] confirm_fixed_after in the notify config, else 6 h."""
    from pacswatch.findings.lifecycle import CONFIRM_FIXED_AFTER
    from pacswatch.findings.schedule import parse_confirm_after

    from pacswatch.notify import configpath

    text, where = follow_up.confirm_fixed_after, "--confirm-fixed-after"
    # No configuration file named: its default (none) holds, and its models are not imported.
    if text is None and configpath.named(follow_up.config) is not None:
        from pacswatch.notify import config as notify_config

        text, where = notify_config.load(follow_up.config).confirm_fixed_after, "[campaign] confirm_fixed_after"
    try:
        return CONFIRM_FIXED_AFTER if text is None else parse_confirm_after(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def campaign_run(settings: RunSettings, err: Console) -> int:
    """`pacswatch run`: rescan what falls due until stopped (or once, or what `now` selects)."""
    from pacswatch.campaign.runloop import RunLoop, parse_selector
    from pacswatch.findings.schedule import RescanPolicy
    from pacswatch.store.repository import Repository

    pace = settings.pace
    if settings.now is None and (settings.severity or settings.forever):
        raise ValueError("--severity and --forever go with --now")
    selector = parse_selector(settings.now, list(settings.severity)) if settings.now is not None else None
    confirm = confirm_fixed_after(settings.follow_up)
    policy = RescanPolicy.from_overrides(list(settings.intervals), confirm)
    parameters = {"web_ports": settings.web_ports, "exclude": [_absolute(p) for p in settings.exclude],
                  "scope": _absolute(settings.scope) if settings.scope else None,
                  "probe": settings.probe.stored(), "rate": pace.rate,
                  "concurrency": pace.concurrency, "keep_all": False}
    distributed = settings.distributed
    if distributed.detach:
        raise ValueError("run takes no --detach: it follows each rescan (start it in the background instead)")
    from pacswatch.campaign.scanrun import execute

    run = execute  # each rescan here, or on distributed workers
    if distributed.broker or distributed.vantages:
        from pacswatch.campaign.sharded import executor

        run = executor(distributed.broker, distributed.vantages, err)
    repo = Repository.open(settings.database)

    def on_outcome(outcome) -> None:
        if not pace.quiet:
            report.print_changes(err, outcome)
        attribute_after(repo, outcome.kept, err, quiet=pace.quiet, config=settings.follow_up.config)

    loop = RunLoop(repo, make_job=lambda stored: _job(stored, pace, err, output=None)[1],
                   build_plan=lambda p: build_plan(repo, p), parameters=parameters, policy=policy,
                   batch=settings.batch, tick=settings.tick, log=(lambda _: None) if pace.quiet else
                   (lambda text: err.print(text, highlight=False, markup=False)), on_outcome=on_outcome,
                   executor=run)
    try:
        loop.replan()  # services scheduled under other intervals follow this run's at once
        if selector is None:
            interrupted = loop.forever(once=settings.once)
        else:
            outcomes = loop.rescan_now(selector)
            if not outcomes:
                asked = " ".join(["--now", *([settings.now] if settings.now else []),
                                  *(f"--severity {s}" for s in settings.severity)])
                err.print(f"pacswatch run: no known service matches {asked} (pacswatch scan looks at new ones)",
                          highlight=False, markup=False)
                return 1
            interrupted = outcomes[-1].stats.interrupted
            if settings.forever and not interrupted:
                interrupted = loop.forever(once=settings.once)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        repo.close()
    return EXIT_INTERRUPTED if interrupted else 0
