"""Fixtures of the dashboard's tests: a database with findings (through the store's own
ingest), the application on it, users of each role, and a logged-in client.

    web_db            an SQLite file with two scans of a few endpoints on 127.65.x.x
    web_settings      WebSettings on web_db (fixed secret)
    app               create_app(web_settings)
    client            an httpx TestClient of app (not logged in)
    login(client, name) -> client   logs in one of USERS (admin, analyst, viewer)
    live_server       the same application served by a real uvicorn on 127.0.0.1:free port
                      (a thread of this process), for the browser tests: .url, .settings

The records are built here as a probe would return them (record.Record) and stored through
Repository.ingest, the path every scan takes; the hostile one carries markup and control
characters in its product and version, as a hostile peer would send them.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pacswatch.findings.work import IntervalSet
from pacswatch.record import AssociationFacts, DicomFacts, Find, HttpFacts, Product, Record
from pacswatch.store import Repository
from pacswatch.web import accounts
from pacswatch.web.settings import WebSettings

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
USERS = {"admin": "admin", "ana": "analyst", "vic": "viewer"}  # name -> role
HOSTILE_PRODUCT = "<script>alert('pw')</script><b>Evil\x1b[31mPACS"
HOSTILE_VERSION = "1.0\"><img src=x onerror=alert(1)>"


def dicom_record(ip: str, port: int, at: datetime, *, severity: str = "critical", studies: int = 12,
                 patients: int = 5, product: str = "Orthanc", version: str = "1.12.4") -> Record:
    facts = DicomFacts(association=AssociationFacts(accepted=True),
                       find=Find(allowed=True, studies=studies, patients=patients))
    return Record(ip=ip, port=port, status="success", service="dicom", severity=severity, dicom=facts,
                  product=Product(name=product, version=version), reasons=["C-FIND open to anyone"],
                  scanned_at=at)


def web_record(ip: str, port: int, at: datetime, *, severity: str = "high") -> Record:
    return Record(ip=ip, port=port, status="success", service="http", severity=severity,
                  product=Product(name="OHIF Viewer"), http=HttpFacts(url=f"http://{ip}:{port}/", auth="open"),
                  reasons=["viewer open without login"], scanned_at=at)


def refused(ip: str, port: int, at: datetime) -> Record:
    return Record(ip=ip, port=port, status="connection-refused", scanned_at=at)


def _scan(repo: Repository, records: list[Record]) -> int:
    scan_id = repo.create_scan(kind="scan", parameters={"targets": ["127.65.0.0/16"]}, seed=1,
                               fingerprint="f" * 64, targets_key="k" * 64, plan_size=len(records))
    work = IntervalSet()
    for index in range(len(records)):
        work.add(index)
    repo.ingest(scan_id, list(enumerate(records)), work=work)
    repo.finish_scan(scan_id, "finished")
    return scan_id


def first_scan(at: datetime) -> list[Record]:
    return [
        dicom_record("127.65.1.10", 104, at),
        dicom_record("127.65.1.11", 11112, at, severity="high", studies=0, patients=0, product="DCMTK",
                     version="3.6.7"),
        dicom_record("127.65.2.20", 4242, at, severity="medium", studies=None, patients=None),
        web_record("127.65.3.30", 8042, at),
        dicom_record("127.65.4.40", 104, at, product=HOSTILE_PRODUCT, version=HOSTILE_VERSION),
        dicom_record("127.65.5.50", 104, at, severity="low", studies=None, patients=None, product="Conquest"),
    ]


def second_scan(at: datetime) -> list[Record]:
    # A week later: .11 closed its port (fixed after the second miss), the rest still there.
    records = [r.model_copy(update={"scanned_at": at}) for r in first_scan(at) if r.ip != "127.65.1.11"]
    return [*records, refused("127.65.1.11", 11112, at)]


def fill(url: str) -> None:
    with Repository.open(url) as repo:
        _scan(repo, first_scan(T0))
        _scan(repo, second_scan(T0 + timedelta(days=7)))
        _scan(repo, second_scan(T0 + timedelta(days=14)))


@pytest.fixture
def web_db(tmp_path: Path) -> str:
    url = str(tmp_path / "web.db")
    fill(url)
    with Repository.open(url) as repo:
        for name, role in USERS.items():
            accounts.add_user(repo.engine, name, role, PASSWORD, T0)
    return url


@pytest.fixture
def web_settings(web_db: str) -> WebSettings:
    return WebSettings(database_url=web_db, secret=b"s" * 32)


@pytest.fixture
def app(web_settings: WebSettings):
    from pacswatch.web.app import create_app

    application = create_app(web_settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    # base_url on loopback: nothing here leaves the process, but a Host header names no outside name.
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


CSRF_INPUT = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def do_login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "next": "/",
                                       "csrf_token": csrf_from(page.text)}, follow_redirects=False)


@pytest.fixture
def login():
    def log_in(client, name: str):
        answer = do_login(client, name)
        assert answer.status_code == 303, answer.text
        return client

    return log_in


# --- a real server ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    settings: WebSettings
    app: object


@contextmanager
def serving(application, port: int):
    """`application` served by a real uvicorn on 127.0.0.1:`port` in a thread, until the block ends."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(web_settings: WebSettings):
    from pacswatch.web.app import create_app

    application = create_app(web_settings)
    port = free_port()
    with serving(application, port):
        yield LiveServer(f"http://127.0.0.1:{port}", web_settings, application)
