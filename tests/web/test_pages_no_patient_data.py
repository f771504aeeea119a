"""docs/design.md, first rule, through the dashboard: a real pynetdicom server holding the fake
patients of tests/fakedata.py is scanned by the real command line into the database the
dashboard serves; no page, download or API answer holds any of their markers (names, IDs, birth
dates, UIDs), while the same pages do show the counts the scan made (so the search can fail)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for extra in (_TESTS, _TESTS / "interop"):
    if str(extra) not in sys.path:  # fakedata and the interop helpers (tests/ is not a package)
        sys.path.insert(0, str(extra))

import fakedata  # noqa: E402
from web_support import PASSWORD, do_login  # noqa: E402
from pynetdicom_server import PynetdicomServer  # noqa: E402

from pacswatch.cli import main  # noqa: E402
from pacswatch.web import accounts  # noqa: E402
from pacswatch.web.settings import WebSettings, utc_now  # noqa: E402

SERVER_IP = "127.65.7.7"


def test_no_page_or_api_answer_holds_patient_data(tmp_path):
    from fastapi.testclient import TestClient

    from pacswatch.store.engine import open_database
    from pacswatch.web.app import create_app

    db = str(tmp_path / "scan.db")
    server = PynetdicomServer(SERVER_IP, datasets=fakedata.make_datasets(), workdir=tmp_path / "server")
    with server:
        code = main(["scan", f"{SERVER_IP}:{server.port}", "--database", db, "--quiet", "--seed", "5",
                     "--output", str(tmp_path / "records.jsonl")])
    assert code == 0
    engine = open_database(db)
    accounts.add_user(engine, "ana", "analyst", PASSWORD, utc_now())
    token = accounts.new_api_token(engine, "ana", utc_now())
    engine.dispose()

    app = create_app(WebSettings(database_url=db, secret=b"k" * 32))
    answers: dict[str, str] = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        do_login(client, "ana")
        for path in ("/", "/findings", "/findings?status=active", "/findings.csv", "/findings.json",
                     f"/endpoints/{SERVER_IP}:{server.port}", "/scans", "/cases", "/api/docs"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            answers[path] = answer.text
        finding = re.search(r'href="/findings/(\d+)"', answers["/findings"])
        assert finding, answers["/findings"][-2000:]
        answers["finding"] = client.get(f"/findings/{finding.group(1)}").text
        bearer = {"Authorization": f"Bearer {token}"}
        for path in ("/api/v1/findings", f"/api/v1/findings/{finding.group(1)}",
                     f"/api/v1/endpoints/{SERVER_IP}:{server.port}", "/api/v1/scans", "/api/v1/cases"):
            answer = client.get(path, headers=bearer)
            assert answer.status_code == 200, path
            answers[path] = answer.text
    app.state.engine.dispose()

    leaks = {path: fakedata.find_markers(text) for path, text in answers.items() if fakedata.find_markers(text)}
    assert not leaks, f"patient data in the dashboard's answers: {leaks}"
    # The scan counted the fake patients, and the pages show those counts.
    shown = re.search(r"<dt>patients</dt><dd>(\d+)</dd>", answers["finding"])
    assert shown and int(shown.group(1)) == fakedata.N_PATIENTS, answers["finding"][-3000:]
    studies = re.search(r"<dt>studies</dt><dd>(\d+)</dd>", answers["finding"])
    assert studies and int(studies.group(1)) == fakedata.N_STUDIES
    assert '"patients":' in answers["/api/v1/findings"]
