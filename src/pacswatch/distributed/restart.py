"""When `pacswatch worker` starts Celery's worker again after it stopped on its own.

Celery's worker stops on any error it calls unrecoverable; one of them is a broker restart that
drops the Redis connection while the worker holds a shard and waits for the next (kombu 5.7
fails to close that connection). A worker that stays down leaves its queues unserved until
someone notices, so the command starts it again. A worker that keeps failing soon after each
start gives up instead: a crash loop says something is wrong that starting again will not mend.
"""

from __future__ import annotations

QUICK = 60.0  # seconds: a run that fails sooner than this counts towards giving up
GIVE_UP_AFTER = 5  # quick failures in a row
LONGEST_PAUSE = 30.0  # seconds


def restart_pause(quick_failures: int) -> float | None:
    """Seconds to wait before starting again, after `quick_failures` failures in a row that each
    came within QUICK of their start (1 for a failure after a long run); None: give up."""
    if quick_failures > GIVE_UP_AFTER:
        return None
    return min(LONGEST_PAUSE, 2.0 ** max(0, quick_failures - 1))


def quick_failures_after(previous: int, ran_for: float) -> int:
    """The count restart_pause takes, after a failure that ended a run of `ran_for` seconds."""
    return previous + 1 if ran_for < QUICK else 1
