"""`pacswatch demo --serve` as a person runs it: the lab is scanned, the dashboard comes up on
127.0.0.1 with the printed demo user, its case lists the lab's owner, the overview draws its
charts in Chromium (README's screenshot, docs/img/overview.png, is taken here when
PACSWATCH_README_IMAGE is set), and Ctrl-C
(SIGINT) stops the dashboard and the lab."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from .browser_world import README_IMAGE, chromium, shot

pytestmark = pytest.mark.slow
ENTRY = "import sys; from pacswatch.cli import main; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_serve_scans_the_lab_and_serves_it_with_a_demo_user(tmp_path):
    port = _free_port()
    base = f"127.66.{200 + os.getpid() % 50}.0"  # not the browser tests' /24s (127.66.0-199)
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", ENTRY, "demo", "--serve", "--base-ip", base,
                                    "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"user (\S+), password (\S+)", out.read_text())):
            assert process.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        name, password = found.groups()
        assert "endpoints reported as the lab expects" in out.read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:  # uvicorn starts just after the line is printed
                try:
                    login = client.get("/login")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', login.text).group(1)
            answer = client.post("/login", data={"name": name, "password": password, "next": "/",
                                                  "csrf_token": token})
            assert answer.status_code == 303
            cases = client.get("/cases")
            assert cases.status_code == 200 and "Demo Hospital (simulated)" in cases.text
            owners = client.get("/owners").text
            assert base.rsplit(".", 1)[0] + ".0/24" in owners
        with chromium() as browser:
            page = browser.new_page(base_url=f"http://127.0.0.1:{port}", viewport={"width": 1280, "height": 900})
            page.goto("/login")
            page.fill("input[name=name]", name)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_selector("#chart-scans canvas")
            page.wait_for_timeout(300)  # uPlot draws on the next animation frame
            if os.environ.get("PACSWATCH_README_IMAGE"):  # refresh README's screenshot on request only:
                page.screenshot(path=str(README_IMAGE), full_page=True)  # a test run leaves the tree clean
            shot(page, "demo-overview")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0, out.read_text()
    # The lab stopped with it: its DICOM port answers no more.
    with pytest.raises(OSError):
        socket.create_connection((base.rsplit(".", 1)[0] + ".10", 11112), timeout=1).close()
