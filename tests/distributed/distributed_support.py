"""Real services for the distributed tests: redis-server and PostgreSQL on loopback, and
`pacswatch worker` processes. Nothing is mocked; every address is 127.0.0.1 or the lab's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacswatch.distributed.throwaway import ThrowawayRedis, free_port  # noqa: F401 (the tests use free_port)

# Seconds before Redis gives an unacknowledged shard to another worker: short where a test kills
# a worker, long enough elsewhere that no shard of a test outlives it (a lab shard with slow
# peers takes several seconds; past the timeout it would run twice, harmless but counted).
VISIBILITY = 60


@pytest.fixture
def redis(tmp_path):
    server = ThrowawayRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres):
    import uuid

    return postgres.create_database(f"d_{uuid.uuid4().hex[:12]}")


def pacswatch(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pacswatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def finish(scan: subprocess.Popen, workers: "Workers", timeout: float = 150) -> tuple[str, str]:
    """A `pacswatch scan` process's (stdout, stderr) once it ends; if it does not in time, an
    AssertionError that says where every shard was and what the workers logged."""
    try:
        return scan.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        scan.kill()
        _, err = scan.communicate(timeout=10)
        raise AssertionError(f"the scan did not end in {timeout:.0f} s\nshards:\n{workers.shards()}\n"
                             f"scan stderr:\n{err}\nworkers:\n{workers.logs()}") from None


class Workers:
    """`pacswatch worker` processes, stopped (SIGTERM, then SIGKILL) at the end of the test."""

    def __init__(self, broker: str, database: str, log_dir: Path) -> None:
        self.broker, self.database, self.log_dir = broker, database, log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, *extra: str, concurrency: int = 1, visibility: float = VISIBILITY) -> subprocess.Popen:
        number = len(self.processes)
        log = open(self.log_dir / f"worker{number}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "pacswatch.cli", "worker", "--broker", self.broker, "--database", self.database,
             "--concurrency", str(concurrency), "--name", f"w{number}.{os.getpid()}@test", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PACSWATCH_VISIBILITY_TIMEOUT": str(visibility)}, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def wait_live(self, count: int, timeout: float = 30) -> None:
        from pacswatch.store.repository import Repository
        from pacswatch.store.shards import ShardStore

        deadline = time.monotonic() + timeout
        with Repository.open(self.database) as repo:
            while time.monotonic() < deadline:
                if len(ShardStore(repo.engine).workers(live_only=True)) >= count:
                    time.sleep(1.0)  # registered with the database; give Celery a moment to consume
                    return
                time.sleep(0.2)
        raise AssertionError(f"{count} workers did not come up: {self.logs()}")

    def shards(self) -> str:
        """One line per shard of every scan: number, state, tries, worker, lease."""
        from pacswatch.store.repository import Repository
        from pacswatch.store.shards import ShardStore

        with Repository.open(self.database) as repo:
            ids = [scan["id"] for scan in repo.scans()]
            return "\n".join(f"scan {s['scan_id']} #{s['number']} {s['state']} tries {s['tries']} {s['worker']} "
                             f"lease {s['lease_owner']} at {s['lease_at']}" for s in ShardStore(repo.engine).of_scans(ids))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("worker*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def workers(redis, pg_url, tmp_path):
    # The schema first, so that workers starting together do not race to create it.
    from pacswatch.store.repository import Repository

    Repository.open(pg_url).close()
    pool = Workers(redis.url, pg_url, tmp_path)
    yield pool
    pool.stop()
