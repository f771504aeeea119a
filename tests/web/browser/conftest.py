"""Fixtures of the browser tests: a real headless Chromium (Debian's, by path; Playwright's own
browsers are never downloaded) driving the dashboard served by a real uvicorn on 127.0.0.1, on a
database that holds, besides the findings of tests/web/conftest.py:

- a lab PACS on 127.66.N.0 scanned by the real scanner, and a service at 127.66.N.99 seen once
  and closed since (nothing listens there), both attributed from the local contacts table to
  one owner, whose case was notified by a real `notify` pass through aiosmtpd on loopback (so
  the notice's /verify link is in the mail the SMTP server received);
- a finding whose product carries markup, a script and control characters, as a hostile server
  would send them, and an owner name with markup.

The browser reaches loopback only: every host name maps to nothing (--host-resolver-rules), and
background networking is off. Screenshots go to test-artifacts/screenshots/ (CI keeps them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[2]
for extra in (_TESTS / "notify", _TESTS / "attribution"):  # lab_scan, smtp_servers, loopback_servers
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from lab_scan import scan_and_store  # noqa: E402
from loopback_servers import loopback_only  # noqa: E402
from smtp_servers import SmtpServer  # noqa: E402
from web_support import serving  # noqa: E402

from .browser_world import (  # noqa: E402
    CLOSED_IP,
    CONTACT,
    HOSTILE_OWNER,
    HOSTILE_PRODUCT,
    NET,
    chromium,
)

@pytest.fixture(autouse=True)
def _loopback_only():
    with loopback_only():
        yield


@pytest.fixture
def browser(world):
    """Chromium, started after the world (see browser_world.chromium)."""
    with chromium() as instance:
        yield instance


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


NOTIFY_CONFIG = """
[sender]
organisation = "Example CERT"
from = "cert@example.org"

[smtp]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout = 10.0
helo = "pacswatch.test"  # else smtplib asks the system resolver for this host's name

[notify]
suppression_days = 0

[web]
url = "{url}"
secret_file = "{secret_file}"
scanner_addresses = ["192.0.2.0/28", "2001:db8::/64"]
"""


def _records(at: datetime):
    from pacswatch.record import AssociationFacts, DicomFacts, Find, Product, Record

    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=3, patients=2))
    closed = Record(ip=CLOSED_IP, port=104, status="success", service="dicom", severity="critical", dicom=facts,
                    product=Product(name="Orthanc", version="1.12.4"), reasons=["C-FIND open to anyone"],
                    scanned_at=at)
    hostile = Record(ip=f"{NET}.98", port=104, status="success", service="dicom", severity="high", dicom=facts,
                     product=Product(name=HOSTILE_PRODUCT, version="1\r\nX-Injected: yes"),
                     reasons=["C-FIND open to anyone"], scanned_at=at)
    return [closed, hostile]


def _store(repo, records) -> None:
    from pacswatch.findings.work import IntervalSet

    scan_id = repo.create_scan(kind="scan", parameters={"targets": [NET + ".0/24"]}, seed=2, fingerprint="b" * 64,
                               targets_key="b" * 64, plan_size=len(records))
    work = IntervalSet()
    for index in range(len(records)):
        work.add(index)
    repo.ingest(scan_id, list(enumerate(records)), work=work)
    repo.finish_scan(scan_id, "finished")


@dataclass
class World:
    url: str
    settings: object
    smtp: SmtpServer
    lab_endpoint: str
    closed_endpoint: str
    case_id: int
    notify_config: Path


@pytest.fixture
def world(web_db: str, tmp_path: Path, smtp_server: SmtpServer):
    """The database above, served by uvicorn; the case's first notice already received."""
    from pacswatch.attribution.local import LocalOwner
    from pacswatch.attribution.owner import decide
    from pacswatch.lab import Lab
    from pacswatch.notify import config as configuration
    from pacswatch.notify.service import findings_exposures, notify
    from pacswatch.notify.store import NotifyStore
    from pacswatch.notify.workflow import open_cases
    from pacswatch.store.repository import Repository
    from pacswatch.web.app import create_app
    from pacswatch.web.settings import WebSettings

    lab = Lab(f"{NET}.0", port=0, names=["open-archive"]).__enter__()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    secret = b"b" * 32
    secret_file = tmp_path / "web-secret"
    secret_file.write_bytes(secret)
    config_file = tmp_path / "notify.toml"
    config_file.write_text(NOTIFY_CONFIG.format(smtp_port=smtp_server.port, url=url, secret_file=secret_file))

    now = datetime.now(UTC)
    with Repository.open(web_db) as repo:
        scan_and_store(repo, [e.address for e in lab.manifest])
        _store(repo, _records(now))
        store = NotifyStore(repo.engine)
        store.add_owner(LocalOwner(f"{NET}.0/24", HOSTILE_OWNER, (CONTACT,),
                                   escalation=("abuse@isp.example.net",)), now)
        owners = store.owners()
        exposures = findings_exposures(repo.engine)
        ips = sorted({ip for ip, _ in exposures if ip.startswith(NET + ".")})
        # What `attribute` decides from the local table alone (nothing is looked up).
        store.save_attributions([(decide(ip, [], local=owners), []) for ip in ips], now)
        config = configuration.load(str(config_file))
        open_cases(store, exposures, now=now, policy=config.settings.policy)
        result = notify(repo.engine, config, dry_run=False)
        assert result.delivery is not None and len(result.delivery.sent) == 1, result
        (case,) = [c for c in store.cases() if c.owner_key.startswith("local:")]
        case_id = case.stored_id

    settings = WebSettings(database_url=web_db, secret=secret, notify_config=config_file)
    application = create_app(settings)
    try:
        with serving(application, port):
            yield World(url, settings, smtp_server, f"{lab.manifest[0].ip}:{lab.manifest[0].port}",
                        f"{CLOSED_IP}:104", case_id, config_file)
    finally:
        application.state.engine.dispose()
        lab.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def page_of(world, browser):
    """page_of(user) -> a page of a fresh browser context, logged in as `user` (None: anonymous)."""
    contexts = []

    def open_page(user: str | None = None):
        context = browser.new_context(base_url=world.url, accept_downloads=True,
                                      viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        if user is not None:
            page.goto("/login")
            page.fill("input[name=name]", user)
            page.fill("input[name=password]", "correct horse battery")
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "/login" not in u)
        return page

    yield open_page
    for context in contexts:
        context.close()
