"""The command line of distributed scans (Celery, Redis, PostgreSQL):

    pacswatch worker [--broker URL] [--database URL] [--queues A,B] [--concurrency N] [--vantage NAME]
    pacswatch workers [--all]              live workers: vantage, concurrency, tasks done, heartbeat
    pacswatch shards SCAN_ID [--endpoints] a distributed scan's shards; a failed one's endpoints
    pacswatch scan ... --broker URL [--detach] [--vantage A,B]
    pacswatch scan --resume ID --broker URL

`register(sub)` adds worker, workers and shards; scan's and run's --broker, --detach, --vantage
and --shard-size are declared in options.py (options.distributed) and reach the campaign as
DistributedSettings. cli/scan.py hands `scan` here when any is given (the broker then from
PACSWATCH_BROKER_URL).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from pacswatch.cli import options
from pacswatch.cli.options import positive
from pacswatch.output import error_line, shown, stdout_console

if TYPE_CHECKING:
    from pacswatch.campaign.settings import ScanSettings

EXIT_FAILED_SHARDS = 1
EXIT_INTERRUPTED = 130


def register(sub) -> None:
    worker = sub.add_parser("worker", help="run a distributed-scan worker (Celery) until SIGTERM",
                            description="Takes shards of distributed scans from the broker, probes them and "
                                        "stores the records in the database itself. SIGTERM: finishes its "
                                        "shards, then stops (a second SIGTERM gives them back).")
    worker.add_argument("--broker", metavar="URL", help="Celery broker (default $PACSWATCH_BROKER_URL)")
    options.database(worker)
    worker.add_argument("--queues", metavar="A,B", help="queues to take shards from (default: its vantage's and "
                        "the default queue 'pacswatch')")
    worker.add_argument("--concurrency", type=positive("concurrency"), default=os.cpu_count() or 1, metavar="N",
                        help="shards at once, one process each (default: the number of cores)")
    worker.add_argument("--vantage", metavar="NAME", help="where this worker scans from, recorded with every "
                        "observation; takes the shards of scans given --vantage NAME")
    worker.add_argument("--name", metavar="NAME", help="Celery node name (default VANTAGE.PID@HOST; "
                        "NAME without @ becomes NAME@HOST)")
    worker.add_argument("--loglevel", default="WARNING", help="Celery log level (default WARNING)")
    worker.set_defaults(handler=cmd_worker)

    workers = sub.add_parser("workers", help="list distributed-scan workers (heartbeats, and a Celery ping)")
    workers.add_argument("--broker", metavar="URL", help="also ping the workers through this broker "
                         "(default $PACSWATCH_BROKER_URL, if set)")
    options.database(workers)
    workers.add_argument("--all", action="store_true", help="also workers no longer alive")
    workers.set_defaults(handler=cmd_workers)

    shards = sub.add_parser("shards", help="the shards of a distributed scan; failed ones' endpoints")
    shards.add_argument("scan_id", type=positive("scan ID"), metavar="SCAN_ID",
                        help="the distributed scan (pacswatch scans lists them)")
    shards.add_argument("--endpoints", action="store_true", help="list the endpoints of the failed shards")
    options.database(shards)
    shards.set_defaults(handler=cmd_shards)


# ---------------------------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    from celery.signals import worker_process_init, worker_shutting_down

    # The campaign's plan and owners' lookup, passed down to the tasks.
    from pacswatch.campaign.commands import attribute_stored
    from pacswatch.campaign.planinputs import stored_plan
    from pacswatch.distributed.app import DEFAULT_QUEUE, check_broker, check_vantage, make_app, queue_for
    from pacswatch.distributed.tasks import WorkerConfig, register as register_task
    from pacswatch.store.repository import Repository, now_utc
    from pacswatch.store.shards import HEARTBEAT, ShardStore

    vantage = check_vantage(args.vantage) if args.vantage else None
    app = make_app(args.broker)
    check_broker(app)
    if args.queues:
        queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    else:
        queues = [queue_for(vantage), *([DEFAULT_QUEUE] if vantage else [])]
    name = worker_name(args.name, vantage, os.getpid(), socket.gethostname())
    register_task(app, WorkerConfig(args.database, vantage, stored_plan, after_scan=attribute_stored))
    repo = Repository.open(args.database)  # fails here, in one line, if the database is not usable
    store = ShardStore(repo.engine)
    store.heartbeat(name, vantage=vantage, queues=queues, concurrency=args.concurrency, started_at=now_utc())
    # The pool's processes are forks of this one: they must not use its connections.
    worker_process_init.connect(lambda **_: repo.engine.dispose(close=False), weak=False)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            try:
                store.heartbeat(name, vantage=vantage, queues=queues, concurrency=args.concurrency)
            except Exception as exc:  # noqa: BLE001 - the database away for a moment: the next beat tries again
                print(f"pacswatch worker: heartbeat failed: {exc}", file=sys.stderr)

    thread = threading.Thread(target=beat, name="pacswatch-heartbeat", daemon=True)
    thread.start()
    # Told to stop (SIGTERM, SIGINT): Celery says so before it stops; any other stop is a failure.
    told_to_stop = threading.Event()
    worker_shutting_down.connect(lambda **_: told_to_stop.set(), weak=False)
    try:
        return _run_celery_worker(app, told_to_stop, hostname=name, queues=queues, concurrency=args.concurrency,
                                  loglevel=args.loglevel)
    finally:
        stop.set()
        thread.join(timeout=2 * HEARTBEAT)
        try:
            store.gone(name)
        finally:
            repo.close()


def worker_name(given: str | None, vantage: str | None, pid: int, host: str) -> str:
    """The worker's Celery node name, which its heartbeats, its shards and its ping replies all
    carry: Celery itself would make a NAME without @ into celery@NAME, and the worker's
    heartbeat row would then match neither its shards nor its ping (pure)."""
    name = given or f"{vantage or 'pacswatch'}.{pid}"
    return name if "@" in name else f"{name}@{host}"


def _run_celery_worker(app, told_to_stop: threading.Event, **options) -> int:
    """Celery's worker, started again after it stopped on an error without being told to stop
    (distributed/restart.py says when); its exit code."""
    from pacswatch.distributed.restart import quick_failures_after, restart_pause

    failures = 0
    while True:
        started = time.monotonic()
        worker = app.Worker(**options, pool="prefork", without_mingle=True, without_gossip=True,
                            optimization="fair")
        worker.start()
        exitcode = int(worker.exitcode or 0)
        if exitcode == 0 or told_to_stop.is_set():
            return exitcode
        failures = quick_failures_after(failures, time.monotonic() - started)
        pause = restart_pause(failures)
        if pause is None:
            print(f"pacswatch worker: Celery's worker failed {failures} times in a row soon after starting; "
                  "giving up", file=sys.stderr)
            return exitcode
        print(f"pacswatch worker: Celery's worker stopped on an error (logged above); starting it again in "
              f"{pause:.0f} s", file=sys.stderr)
        if told_to_stop.wait(pause):
            return exitcode


# --------------------------------------------------------------------------------------- workers


def cmd_workers(args: argparse.Namespace) -> int:
    from pacswatch.campaign.report import when
    from pacswatch.store.repository import Repository, now_utc
    from pacswatch.store.shards import LIVE, ShardStore

    with Repository.open(args.database) as repo:
        rows = ShardStore(repo.engine).workers(live_only=not args.all)
    pinged = _ping(args.broker)
    now = now_utc()
    table = Table(title="Workers" + ("" if args.all else " (live)"))
    for column in ("name", "vantage", "queues", "concurrency", "tasks done", "last heartbeat", "live", "ping"):
        table.add_column(column)
    for w in rows:
        live = now - w["last_heartbeat"] < LIVE
        ping = "-" if pinged is None else ("pong" if w["name"] in pinged else "no answer")
        table.add_row(shown(w["name"]), shown(w["vantage"] or "-"), shown(w["queues"]), str(w["concurrency"]),
                      str(w["tasks_done"]), when(w["last_heartbeat"]), "yes" if live else "no", ping)
    out = stdout_console()
    if not rows:
        out.print("no live workers" if not args.all else "no workers have run against this database",
                  highlight=False, markup=False)
    else:
        out.print(table)
    return 0


def _ping(broker: str | None) -> set[str] | None:
    """Names of the workers that answer a Celery ping now; None without a broker to ask."""
    from pacswatch.distributed.app import BROKER_ENV, make_app

    if not (broker or os.environ.get(BROKER_ENV)):
        return None
    try:
        replies = make_app(broker).control.ping(timeout=1.0) or []
    except Exception:  # noqa: BLE001 - no broker: the heartbeats still say who is alive
        return None
    return {name for reply in replies for name in reply}


# ---------------------------------------------------------------------------------------- shards


def cmd_shards(args: argparse.Namespace) -> int:
    from pacswatch.campaign.planinputs import stored_plan
    from pacswatch.campaign.report import when
    from pacswatch.store.repository import Repository
    from pacswatch.store.shards import ShardStore

    out = stdout_console()
    with Repository.open(args.database) as repo:
        rows = ShardStore(repo.engine).of_scans([args.scan_id])
        if not rows:
            raise ValueError(f"scan {args.scan_id} has no shards (not a distributed scan, or not in this database)")
        table = Table(title=f"Shards of scan {args.scan_id}")
        for column in ("shard", "indexes", "state", "tries", "worker", "vantage", "updated", "error"):
            table.add_column(column)
        for s in rows:
            table.add_row(str(s["number"]), f"{s['first_index']}-{s['last_index']}", s["state"], str(s["tries"]),
                          shown(s["worker"] or "-"), shown(s["vantage"] or "-"), when(s["updated_at"]),
                          shown(s["error"] or ""))
        out.print(table)
        failed = [s for s in rows if s["state"] == "failed"]
        if args.endpoints and failed:
            scan = repo.scan(args.scan_id)
            assert scan is not None  # it has shards
            plan = stored_plan(repo, scan)
            for s in failed:
                for index in range(int(s["first_index"]), int(s["last_index"]) + 1):
                    endpoint = plan[index]
                    print(f"{endpoint.ip}:{endpoint.port}\tshard {s['number']}")
    return 0


# ------------------------------------------------------------------------------------------ scan


def distributed_scan(settings: ScanSettings, err: Console) -> int:
    """`pacswatch scan --broker URL`: plan once, one scan per vantage, shards sent, progress
    followed from the database (or --detach)."""
    from pacswatch.store.errors import StoreError

    try:
        return _distributed_scan(settings, err)
    except StoreError as exc:
        err.print(error_line("pacswatch scan:", exc), highlight=False, soft_wrap=True)
        return 1


def _distributed_scan(settings: ScanSettings, err: Console) -> int:
    from pacswatch.campaign.commands import confirm_fixed_after, fixed_on_resume, scan_parameters
    from pacswatch.campaign.planinputs import plan_from_inputs, read_inputs, stored_plan
    from pacswatch.campaign.scanrun import check_same_plan, start_scan, targets_from_parameters
    from pacswatch.findings.schedule import POLICY_SETTING, RescanPolicy
    from pacswatch.store.shards import BY_COMMAND, BY_WORKER
    from pacswatch.distributed.app import check_broker, check_vantage, make_app
    from pacswatch.distributed.follow import resend, submit
    from pacswatch.distributed.shards import DEFAULT_SHARD_SIZE
    from pacswatch.store.engine import masked_command
    from pacswatch.store.repository import Repository
    from pacswatch.store.shards import ShardStore

    given, distributed, quiet, resume = settings.plan, settings.distributed, settings.pace.quiet, settings.resume
    if settings.pace.workers != 1:
        raise ValueError("--workers is for a local scan; with --broker the workers are `pacswatch worker` processes")
    vantages: list[str | None] = [check_vantage(v) for v in distributed.vantages] or [None]
    resuming = resume is not None
    if resuming and (given.targets or given.masscan or given.zmap):
        raise ValueError(f"--resume {resume} takes no targets")
    if resuming and (fixed := fixed_on_resume(given, settings.probe)):
        raise ValueError(f"--resume {resume} keeps the plan and probe settings it started with: leave out "
                         f"{', '.join(fixed)}")
    confirm = confirm_fixed_after(settings.follow_up)  # a bad value fails before anything is stored
    if resuming and settings.follow_up.confirm_fixed_after is not None:
        raise ValueError(f"--resume {resume} keeps the --confirm-fixed-after it started with: leave it out")
    parameters = targets = None
    if not resuming:
        # Read once, here: the workers get the targets as resolved here and the files' text
        # through the database (campaign/planinputs.py), never the paths.
        parameters = scan_parameters(given, settings.probe, settings.pace)
        targets = targets_from_parameters(parameters)
    app = make_app(distributed.broker)
    check_broker(app)  # before anything is stored: a dead broker is one line, and no scan to clean up
    with Repository.open(settings.database) as repo:
        if repo.backend == "sqlite":
            err.print("pacswatch scan: the database is SQLite: workers on other machines cannot reach it "
                      "(use postgresql://...)", style="yellow", highlight=False)
        if resuming:
            assert resume is not None
            scan = repo.scan(resume)
            if scan is None:
                raise ValueError(f"there is no scan {resume} in this database")
            if not ShardStore(repo.engine).of_scans([resume]):
                raise ValueError(f"scan {resume} was not a distributed scan: resume it without --broker")
            if scan["status"] == "finished":
                raise ValueError(f"scan {resume} is finished: nothing to resume (start a new scan)")
            check_same_plan(scan, stored_plan(repo, scan))
            scan_ids = [resume]
            sent = resend(app, repo, scan_ids)
            if not quiet:
                err.print(f"pacswatch: resuming scan {resume}: {sent} shards sent again "
                          f"({scan['done']} of {scan['plan_size']} endpoints done)", highlight=False, markup=False)
        else:
            assert parameters is not None and targets is not None
            # The findings of this scan follow this policy on every worker (--confirm-fixed-after).
            policy = RescanPolicy.from_json(repo.setting(POLICY_SETTING), confirm)
            attribute = None if not settings.follow_up.attribute else BY_WORKER if distributed.detach else BY_COMMAND
            inputs = read_inputs(parameters, targets, policy, attribute)
            plan = plan_from_inputs(repo, parameters, inputs)  # the workers' plan, built as they build it
            command = masked_command(["pacswatch", *sys.argv[1:]])
            scan_ids = []
            for vantage in vantages:
                scan_id = start_scan(repo, plan, {**parameters, "vantage": vantage, "distributed": True},
                                     command=command)
                count = submit(app, repo, scan_id, plan.size, vantage=vantage, inputs=inputs,
                               shard_size=distributed.shard_size or DEFAULT_SHARD_SIZE)
                scan_ids.append(scan_id)
                if not quiet:
                    from pacswatch import __version__

                    err.print(f"pacswatch {__version__}: scan {scan_id}: {plan.size} endpoints "
                              f"({plan.distinct_ports} ports), seed {plan.seed}, rate {parameters['rate']:g}/s, "
                              f"concurrency {parameters['concurrency']} shared among the workers; {count} shards "
                              f"sent to queue {'pacswatch' if vantage is None else 'pacswatch.' + vantage}",
                              highlight=False, markup=False)
        if distributed.detach:
            print(" ".join(map(str, scan_ids)))
            return 0
        return _follow_and_report(app, repo, scan_ids, settings, err)


def _follow_and_report(app, repo, scan_ids: list[int], settings: ScanSettings, err: Console) -> int:
    from pacswatch.campaign import report
    from pacswatch.campaign.commands import attribute_after, attribute_stored
    from pacswatch.campaign.sharded import outcome_of
    from pacswatch.distributed.follow import follow
    from pacswatch.store.shards import BY_COMMAND, BY_WORKER, ShardStore
    from pacswatch.output import (JsonLinesWriter, findings_table, host_table, more_line, summary_table,
                                  worst_first, worst_per_host)

    output, quiet = settings.output, settings.pace.quiet
    show = False if (settings.pace.no_progress or quiet) else err.is_terminal
    broker = f" --broker {settings.distributed.broker}" if settings.distributed.broker else ""
    try:
        result = follow(app, repo, scan_ids, err, show_progress=show, after_scan=attribute_stored)
    except KeyboardInterrupt:
        # No one follows it now: the worker that ends it looks up the owners instead.
        ShardStore(repo.engine).set_attribute(
            [i for i in scan_ids if (ShardStore(repo.engine).inputs(i) or {}).get("attribute") == BY_COMMAND],
            BY_WORKER)
        ids = " ".join(map(str, scan_ids))
        err.print(f"pacswatch scan: stopped following; the workers go on with scan {ids} (pacswatch scans); "
                  f"to follow it again: pacswatch scan --resume {scan_ids[0]}{broker}", highlight=False, markup=False)
        return EXIT_INTERRUPTED
    if output.path:
        from pacswatch.safefile import open_stream

        with open_stream(output.path, append=False) as stream:
            writer = JsonLinesWriter(stream)
            for record in result.kept:
                writer.write(record)
            writer.flush()
    elif output.format == "jsonl" or (output.format is None and not sys.stdout.isatty()):
        writer = JsonLinesWriter(sys.stdout)
        for record in result.kept:
            writer.write(record)
        writer.flush()
    if not quiet:
        kept = result.kept
        if kept:
            rows, left_out = worst_first(kept, output.top)
            err.print(findings_table(rows))
            if left_out:
                err.print(more_line(left_out, scan_ids[0] if len(scan_ids) == 1 else None), highlight=False)
            if len({r.ip for r in kept}) < len(kept):
                err.print(host_table(kept, output.top))
        else:
            err.print("no endpoint answered", highlight=False, markup=False)
        err.print(summary_table(result, result.elapsed, worst_per_host(kept)))
        for scan_id in scan_ids:
            outcome = outcome_of(repo, scan_id, result)
            report.print_changes(err, outcome, top=output.top)
    # The owners of what the scans found, as a local scan looks them up, once they all finished
    # (a scan a worker was to do this for, it did when it ended it).
    store = ShardStore(repo.engine)
    by_command = [i for i in scan_ids if (store.inputs(i) or {}).get("attribute") == BY_COMMAND]
    if by_command and all(result.statuses.get(i) == "finished" for i in by_command):
        attribute_after(repo, result.kept, err, quiet=quiet, config=settings.follow_up.config)
    for shard in result.failed:
        err.print(error_line("pacswatch scan:", f"shard {shard['number']} of scan {shard['scan_id']} failed "
                             f"(plan indexes {shard['first_index']}-{shard['last_index']}): {shard['error']}; its "
                             f"endpoints: pacswatch shards {shard['scan_id']} --endpoints; to try again: "
                             f"pacswatch scan --resume {shard['scan_id']}{broker}"), highlight=False, soft_wrap=True)
    return EXIT_FAILED_SHARDS if result.failed else 0
