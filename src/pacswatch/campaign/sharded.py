"""`pacswatch run --broker URL`: each rescan the run loop starts runs on distributed workers.

The run loop (runloop.py) plans and stores a rescan as always and hands it to `execute`; this
module's executor sends its shards instead of probing here, follows it from the database and
returns the same ScanOutcome, so the loop, its lines and its follow-ups are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from pacswatch.campaign.scanrun import ScanOutcome
from pacswatch.findings.lifecycle import summarize
from pacswatch.scan.runner import ScanStats
from pacswatch.store.repository import Repository


def outcome_of(repo: Repository, scan_id: int, followed) -> ScanOutcome:
    """A followed distributed scan as a local scan's outcome (distributed.follow.Followed)."""
    events = repo.events(scan_id=scan_id)
    changes = summarize((e["kind"], e["old_severity"], e["new_severity"]) for e in events)
    stats = ScanStats(total=followed.total, done=followed.done, by_status=followed.by_status,
                      by_severity=followed.by_severity, interrupted=followed.interrupted)
    return ScanOutcome(scan_id, followed.statuses.get(scan_id, "interrupted"), stats, followed.kept, changes,
                       events, repo.previous_scan(scan_id), remaining=followed.total - followed.done)


def executor(broker: str | None, vantages: tuple[str, ...], err: Console) -> Callable[..., ScanOutcome]:
    """execute(repo, scan_id, plan, job, policy=...) for RunLoop, on the workers of `broker`."""
    from pacswatch.distributed.app import check_broker, check_vantage, make_app
    from pacswatch.distributed.follow import follow, resend, submit
    from pacswatch.campaign.planinputs import read_inputs
    from pacswatch.findings.schedule import RescanPolicy
    from pacswatch.store.shards import BY_COMMAND, ShardStore

    names = [check_vantage(v) for v in vantages]
    if len(names) > 1:
        raise ValueError("run --broker takes one --vantage: each rescan is one scan, from one place")
    vantage = names[0] if names else None
    app = make_app(broker)
    check_broker(app)

    def execute(repo: Repository, scan_id: int, plan, job, *, policy=None) -> ScanOutcome:
        if ShardStore(repo.engine).of_scans([scan_id]):  # a rescan an earlier run left unfinished
            resend(app, repo, [scan_id])
        else:
            # The workers rebuild the plan from what this run read (no file of this machine) and
            # store with this run's policy (--confirm-fixed-after, --interval); the run's
            # on_outcome looks up the owners, as after a local rescan.
            scan = repo.scan(scan_id)
            assert scan is not None  # the run loop stored it
            inputs = read_inputs(scan["parameters"], plan.targets, policy or RescanPolicy(), BY_COMMAND)
            submit(app, repo, scan_id, plan.size, vantage=vantage, inputs=inputs)
        return outcome_of(repo, scan_id, follow(app, repo, [scan_id], err, show_progress=False))

    return execute
