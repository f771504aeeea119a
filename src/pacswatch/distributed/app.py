"""The Celery app of distributed scans: one per process, made from the broker URL.

The settings are what makes a shard run exactly once in effect (with the idempotent ingest):
a task is acknowledged after it ran (`acks_late`), given back when its worker process dies
(`task_reject_on_worker_lost`), and a worker holds one task beyond those it runs (prefetch 1), so
a worker that is killed takes little with it. Redis gives an unacknowledged task to another
worker after the visibility timeout, also while the first still runs it: the shard's lease in
the database (tasks.py) keeps that second delivery from probing it again, so the timeout only
sets how soon a killed worker's shard moves on (plus the lease's staleness).
"""

from __future__ import annotations

import os
import re

from celery import Celery

BROKER_ENV = "PACSWATCH_BROKER_URL"
VISIBILITY_ENV = "PACSWATCH_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT = 1800.0  # seconds; a shard of a few thousand endpoints takes minutes
DEFAULT_QUEUE = "pacswatch"
SHARD_TASK = "pacswatch.shard"
_VANTAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class BrokerMissing(ValueError):
    """No broker URL: neither --broker nor PACSWATCH_BROKER_URL."""


def broker_url(given: str | None) -> str:
    url = given or os.environ.get(BROKER_ENV)
    if not url:
        raise BrokerMissing(f"no broker: give --broker URL or set {BROKER_ENV} (e.g. redis://127.0.0.1:6379/0)")
    return url


def visibility_timeout() -> float:
    text = os.environ.get(VISIBILITY_ENV)
    try:
        value = float(text) if text else DEFAULT_VISIBILITY_TIMEOUT
    except ValueError:
        raise ValueError(f"{VISIBILITY_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{VISIBILITY_ENV} must be positive")
    return value


def check_vantage(name: str) -> str:
    """A vantage name as queues and observations carry it: letters, digits, . _ - (64 at most)."""
    if not _VANTAGE.fullmatch(name):
        raise ValueError(f"vantage {name!r}: use letters, digits, '.', '_' and '-' (64 at most)")
    return name


def queue_for(vantage: str | None) -> str:
    """The queue a shard goes to: the vantage's own, or the one every worker takes by default."""
    return DEFAULT_QUEUE if vantage is None else f"{DEFAULT_QUEUE}.{check_vantage(vantage)}"


def make_app(broker: str | None = None) -> Celery:
    url = broker_url(broker)
    visibility = visibility_timeout()
    app = Celery("pacswatch", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_serializer="json", accept_content=["json"], result_backend=None, task_ignore_result=True,
        # kombu looks for expired unacknowledged tasks every interval x throttle seconds (100 by
        # default): every quarter of the timeout instead, so a killed worker's shard moves on
        # soon after the timeout (one ZRANGE on Redis per look).
        broker_transport_options={"visibility_timeout": visibility,
                                  "unacked_restore_interval": max(1, min(60, int(visibility // 4))),
                                  "unacked_restore_throttle": 1,
                                  # The lock around that look outlives a worker killed holding it:
                                  # 300 s by default, during which no shard would move on.
                                  "unacked_mutex_expire": max(2, min(300, int(visibility)))},
        broker_connection_retry_on_startup=True,
        # Workers keep reconnecting while the broker is away (a restart): no cap on the tries.
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower and `celery events` see the tasks
        task_send_sent_event=True,
    )
    return app


def check_broker(app: Celery, timeout: float = 3.0) -> str | None:
    """ConnectionError with one line if the broker cannot be reached now. Else what names this
    run of the broker: Redis's run_id, new at every start (a restart can be too quick to be
    seen down, and one without persistence has forgotten the queued shards); None if unknown."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout)
            return _run_id(conn)
    except Exception as exc:  # kombu raises its own OperationalError or the socket's OSError
        raise ConnectionError(f"cannot reach the broker at {_masked(app.conf.broker_url)}: {exc}") from None


def _run_id(conn) -> str | None:
    client = getattr(conn.default_channel, "client", None)  # the Redis transport's redis-py client
    try:
        run_id = client.info("server").get("run_id") if client is not None else None
    except Exception:  # noqa: BLE001 - INFO refused (a Redis ACL): restarts are then seen only as downtime
        return None
    return str(run_id) if run_id else None


def _masked(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
