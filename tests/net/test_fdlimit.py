"""A scan's concurrency and the open-file limit (net/fdlimit.py): the soft limit is raised as far
as the hard one allows, and where even that is too low the scan probes fewer endpoints at once
and says so. Before this, `--concurrency 1000` under a soft limit of 256 reported 94% of the
endpoints as `error: Too many open files`, and counted them done."""

from __future__ import annotations

import http.server
import json
import resource
import subprocess
import sys
import threading

import pytest

from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.net.fdlimit import HEADROOM, fitting_concurrency

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]


def test_fitting_concurrency():
    assert fitting_concurrency(1000, 1 << 20, 20) == 1000  # fits: unchanged
    assert fitting_concurrency(1000, 256, 20) == 256 - 20 - HEADROOM
    assert fitting_concurrency(50, 256, 20) == 50
    assert fitting_concurrency(1000, 64, 30) == 1  # never zero: one probe at a time still works


@pytest.fixture(scope="module")
def responder():
    with FastResponder(loopback_addresses(300, "127.47.3.0"), ports=[0], workers=0) as running:
        yield running.endpoints


def scan_under_limit(tmp_path, endpoints, soft: int, hard: int):
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"{ip}:{port}\n" for ip, port in endpoints))
    out = tmp_path / "out.jsonl"

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run([*PACSWATCH, "scan", f"@{targets}", "--concurrency", "500", "--rate", "100000",
                           "--no-progress", "--no-attribute", "--output", str(out),
                           "--database", str(tmp_path / "pacswatch.db")],
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return done, records


def test_a_low_soft_limit_is_raised_and_every_endpoint_probed(tmp_path, responder):
    done, records = scan_under_limit(tmp_path, responder, soft=100, hard=4096)
    assert done.returncode == 0, done.stderr
    assert len(records) == len(responder)
    assert {r["status"] for r in records} == {"success"}, {r.get("detail") for r in records}
    assert "lowered" not in done.stderr


def test_a_low_hard_limit_lowers_the_concurrency_with_a_warning_and_every_endpoint_is_probed(tmp_path, responder):
    done, records = scan_under_limit(tmp_path, responder, soft=128, hard=128)
    assert done.returncode == 0, done.stderr
    assert "concurrency 500 lowered to" in done.stderr and "128" in done.stderr, done.stderr
    assert len(records) == len(responder)
    assert {r["status"] for r in records} == {"success"}, {r.get("detail") for r in records}


# Probes every endpoint of argv[1] (JSON [[ip, port], ...]) at once under a limit of 64
# descriptors; argv[2]: "dicom" (DicomProbe) or "web" (HttpProbe).
PROBES_UNDER_LIMIT = r"""
import asyncio, collections, json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.probes.http import HttpProbe
from pacswatch.scan.runner import probe_endpoint

endpoints, path = json.loads(sys.argv[1]), sys.argv[2]

async def main():
    ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(5.0), ae_guess=()))
    probe = HttpProbe() if path == "web" else DicomProbe()
    records = await asyncio.gather(*(probe_endpoint(probe, ctx, Endpoint(ip, port)) for ip, port in endpoints))
    return collections.Counter(f"{r.status} {r.detail}" for r in records)

print(json.dumps(asyncio.run(main())))
"""


def probes_under_limit(endpoints, path: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBES_UNDER_LIMIT, json.dumps(endpoints), path],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_probes_that_find_no_descriptor_free_wait_for_one_instead_of_failing(responder):
    # 300 probes at once under a limit of 64 descriptors, past any concurrency cap: each connect
    # that meets EMFILE waits for a descriptor to be freed and every endpoint is still probed.
    counts = probes_under_limit(responder, "dicom")
    assert counts == {"success None": len(responder)}, counts


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class WebServer(http.server.ThreadingHTTPServer):
    # A class attribute: the constructor calls listen(), so setting it on the instance
    # afterwards leaves the stdlib's backlog of 5. With 5, a loaded machine overflowed the
    # accept queue (hundreds of ListenOverflows a run), the kernel dropped the handshakes and
    # probes reported the server as a connection or I/O timeout.
    request_queue_size = 512


@pytest.fixture(scope="module")
def web_server():
    """One plain HTTP server answering 404 to everything: (ip, port)."""
    server = WebServer(("127.47.5.2", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.47.5.2", server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_web_probes_that_find_no_descriptor_free_wait_for_one_instead_of_failing(web_server):
    # The web probe connects through httpcore, which wraps the EMFILE twice over: the wait must
    # see through that (200 probes at once under 64 descriptors, on one plain HTTP server).
    counts = probes_under_limit([list(web_server)] * 200, "web")
    assert counts == {"success None": 200}, counts


# One probe of argv[1]:argv[2] (argv[4]: "web", HttpProbe, or "dicom", DicomProbe) under a
# limit of 64 descriptors, with 2 s timeouts (a 12 s endpoint budget), while this process holds
# every free descriptor for argv[3] seconds (to the end when negative). A first probe, before
# the descriptors are taken, does the imports and builds the TLS context, which need
# descriptors of their own.
PROBE_SHORT_OF_DESCRIPTORS = r"""
import asyncio, json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.probes.http import HttpProbe
from pacswatch.scan.runner import probe_endpoint

endpoint, hold = Endpoint(sys.argv[1], int(sys.argv[2])), float(sys.argv[3])

async def main():
    ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(2.0), ae_guess=()))
    probe = HttpProbe() if sys.argv[4] == "web" else DicomProbe()
    first = await probe_endpoint(probe, ctx, endpoint)
    assert first.status == "success", first
    held = []
    for _ in range(2):  # again once the first probe's connection, closed after it returned, is gone
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            await asyncio.sleep(0.2)
    if hold >= 0:
        asyncio.get_running_loop().call_later(hold, lambda: [os.close(fd) for fd in held])
    record = await probe_endpoint(probe, ctx, endpoint)
    return [record.status, record.detail]

print(json.dumps(asyncio.run(main())))
"""


def probe_short_of_descriptors(endpoint, hold: float, kind: str = "web") -> list:
    done = subprocess.run([sys.executable, "-c", PROBE_SHORT_OF_DESCRIPTORS, *map(str, endpoint), str(hold), kind],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_web_probe_waiting_for_a_descriptor_longer_than_its_request_timeout_is_not_timed_out(web_server):
    # No descriptor is free for 1.5 times the 2 s request timeout: that wait is ours, not the
    # server's, so the request is not timed out for it (before: "connection-timeout", which a
    # loaded machine also gave a tenth of the 200 probes of the test above).
    assert probe_short_of_descriptors(web_server, hold=3.0) == ["success", None]


def test_a_web_probe_that_never_finds_a_descriptor_reports_our_error_not_a_silent_server(web_server):
    status, detail = probe_short_of_descriptors(web_server, hold=-1)
    assert (status, detail) == ("error", "endpoint deadline passed waiting for a free file descriptor")


def test_a_dicom_probe_waiting_for_a_descriptor_longer_than_its_connect_timeout_is_not_timed_out(responder):
    # The same for the DICOM connect (net/transport.py): before, its connect timeout ran from
    # before the wait, and the wait was reported as the target's "connect timed out".
    assert probe_short_of_descriptors(responder[0], hold=3.0, kind="dicom") == ["success", None]


def test_a_dicom_probe_that_never_finds_a_descriptor_reports_our_error_not_a_silent_target(responder):
    status, detail = probe_short_of_descriptors(responder[0], hold=-1, kind="dicom")
    assert (status, detail) == ("error", "endpoint deadline passed waiting for a free file descriptor")


# Two web probes of argv[1]:argv[2]; prints the second one's status and the modules it tried to
# import (each a search of sys.path: an import not yet in sys.modules reaches sys.meta_path).
WEB_PROBE_IMPORTS = r"""
import asyncio, json, sys
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.http import HttpProbe
from pacswatch.scan.runner import probe_endpoint

endpoint, tried = Endpoint(sys.argv[1], int(sys.argv[2])), []

class Spy:
    def find_spec(self, name, path=None, target=None):
        tried.append(name)
        return None  # the next finder does the import

async def main():
    ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(5.0), ae_guess=()))
    probe = HttpProbe()
    await probe_endpoint(probe, ctx, endpoint)
    sys.meta_path.insert(0, Spy())
    record = await probe_endpoint(probe, ctx, endpoint)
    return [record.status, sorted(set(tried))]

print(json.dumps(asyncio.run(main())))
"""


def test_a_web_probe_imports_nothing_after_the_first(web_server):
    # An import searches sys.path, listing directories it has not listed since they changed: a
    # descriptor each. httpcore tries `import sniffio` on every request and response close; with
    # sniffio absent every try searched again, and under the 64-descriptor test above a request
    # now and then failed with "os error 24: Too many open files" after its answer had come.
    done = subprocess.run([sys.executable, "-c", WEB_PROBE_IMPORTS, *map(str, web_server)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["success", []]
