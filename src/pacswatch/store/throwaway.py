"""A throwaway PostgreSQL server on loopback, for the tests and the benchmark.

Uses the Debian `postgresql` package's binaries (initdb, pg_ctl): a fresh cluster in a temporary
directory, listening on 127.0.0.1 only (and a socket in that directory), trust authentication
(nothing but this machine can reach it), removed on exit. Run as root, the server runs as the
`postgres` user, since PostgreSQL refuses to run as root.

    with ThrowawayPostgres() as pg:
        url = pg.create_database("t1")   # postgresql+psycopg://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Settings for a disposable server: no durability is needed when the data dies with the test.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresMissing(RuntimeError):
    """initdb/pg_ctl not found: install Debian's `postgresql` package."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl, else the PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0, reverse=True)
    for directory in candidates:
        if os.access(Path(directory) / "initdb", os.X_OK) and os.access(Path(directory) / "pg_ctl", os.X_OK):
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise PostgresMissing("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    def __init__(self, *, durable: bool = False, user: str | None = None) -> None:
        self.bindir = find_bindir()
        self.durable = durable
        # PostgreSQL will not run as root; as root, run it as the Debian package's user.
        self.user = user if user is not None else ("postgres" if os.geteuid() == 0 else None)
        self.port = 0
        self.root: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                                timeout=timeout, user=self.user, cwd="/", stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")

    def start(self) -> "ThrowawayPostgres":
        self.root = Path(tempfile.mkdtemp(prefix="pacswatch-pg-"))
        if self.user is not None:
            shutil.chown(self.root, self.user)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
        settings = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{self.root}'",
                    "max_connections": "100", "shared_buffers": "128MB"}
        if not self.durable:
            settings.update(FAST_SETTINGS)
        for attempt in range(5):  # a free port can be taken between our probe and the server's bind
            self.port = _free_port()
            conf = "\n".join(f"{k} = {v}" for k, v in {**settings, "port": str(self.port)}.items())
            (data / "postgresql.auto.conf").write_text(conf + "\n")
            try:
                self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
                return self
            except RuntimeError:
                if attempt == 4:
                    log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}") from None
                time.sleep(0.2)
        return self

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def session_server(config) -> ThrowawayPostgres:
    """One server per pytest session, whichever conftest asks first; stopped at the session's end.

    Raises (the fixture fails, it does not skip) when the PostgreSQL binaries are missing: the
    suite promises PostgreSQL coverage, and a silent skip would hide its absence in CI.
    """
    server = getattr(config, "_pacswatch_postgres", None)
    if server is None:
        server = ThrowawayPostgres().start()
        config._pacswatch_postgres = server
        config.add_cleanup(server.stop)
    return server


def database_url(backend: str, tmp_path, config) -> str:
    """A fresh, empty database of `backend` (sqlite | postgresql) for one test."""
    import uuid

    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'pacswatch.db'}"
    return session_server(config).create_database(f"t_{uuid.uuid4().hex[:16]}")
