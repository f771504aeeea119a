"""Memory stays flat over 10,000 hostile endpoints (docs/design.md: "Hostile peers are normal").

A cheap hostile responder (this file run as a script, in its own process so that its memory is
not ours) listens on 100 loopback addresses x 100 ports and answers every A-ASSOCIATE-RQ with
one of the lies of docs/dicom-reference.md §7: an A-ASSOCIATE-AC header claiming ~4 GB, a P-DATA-TF
header claiming ~4 GB, a P-DATA-TF of exactly the 1 MiB cap sent in full (the scanner may hold
that much, then must refuse it: no P-DATA before the AC), a short AC whose item overruns it,
random bytes, or an HTTP answer. The scanner runs the full DICOM probe through run_scan in this
process, 500 at once; every record must be a protocol-error (the HTTP answers: a web server,
found by the web probe the DICOM probe hands them to), the RSS growth between the 2,000th
and the 10,000th record must be small, and no connection may ever have buffered more than the
caps (instrumented at the framer and the connection).

The second test is about *when* a failed probe's buffers are freed: today they sit in reference
cycles (the stored exception's traceback holds the frames that hold the session, its framer
and the peer's bytes) until the cyclic GC gets to them, so the peak RSS of a hostile scan
depends on the GC's timing, not only on concurrency x cap.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass

import pytest

HERE = os.path.abspath(__file__)
BASE = "127.201.0.1"  # a /16 nobody else in the suite uses
ADDRESSES = 100
FIRST_PORT = 27100  # below the ephemeral range (32768-60999): no clash with outgoing connections
PORTS = 100
CONCURRENCY = 500
MiB = 1 << 20

# The hostile answers, by kind. Each is sent once, after the client's first bytes.
HTTP_400 = (b"HTTP/1.1 400 Bad Request\r\nServer: hostile\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def hostile_answers(cap: int) -> dict[str, bytes]:
    rng = bytearray(os.urandom(512))
    rng[0] |= 0x80  # never a PDU type (0x01-0x07) nor TLS
    bad_ac_body = bytes(68) + bytes([0x10, 0x00, 0xFF, 0xFF])  # an item longer than its PDU
    return {
        "huge-ac": b"\x02\x00\xff\xff\xff\xf0",
        "huge-pdata": b"\x04\x00\xff\xff\xff\xf0",
        "full-pdata": b"\x04\x00" + cap.to_bytes(4, "big") + bytes(cap),
        "bad-ac": b"\x02\x00" + len(bad_ac_body).to_bytes(4, "big") + bad_ac_body,
        "random-bytes": bytes(rng),
        "http": HTTP_400,
    }


# full-pdata is the costly one (1 MiB each): one endpoint in fifty.
KIND_CYCLE = ("huge-ac", "huge-pdata", "bad-ac", "random-bytes", "http") * 10
KIND_CYCLE = KIND_CYCLE[:-1] + ("full-pdata",)


def endpoints(base: str = BASE, addresses: int = ADDRESSES, ports: int = PORTS,
              kinds: tuple[str, ...] = KIND_CYCLE) -> list[tuple[str, int, str]]:
    first = int(ipaddress.ip_address(base))
    out = []
    for a in range(addresses):
        ip = str(ipaddress.ip_address(first + a))
        for p in range(ports):
            out.append((ip, FIRST_PORT + p, kinds[(a * ports + p) % len(kinds)]))
    return out


# ------------------------------------------------------------------------------ the responder


def serve() -> None:
    """Run as a script: read {"endpoints": [[ip, port, kind], ...], "cap": n} on stdin, listen,
    print {"ready": n}, serve until stdin closes (the test ended or died)."""
    import socket

    spec = json.loads(sys.stdin.readline())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    answers = hostile_answers(spec["cap"])
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class Hostile(asyncio.Protocol):
        def __init__(self, answer: bytes) -> None:
            self.answer = answer
            self.sent = False

        def connection_made(self, transport) -> None:
            self.transport = transport
            self.timer = loop.call_later(30.0, transport.abort)  # never outlive a stuck client

        def data_received(self, data: bytes) -> None:
            if not self.sent:
                self.sent = True
                self.transport.write(self.answer)

        def eof_received(self) -> bool:
            return False

        def connection_lost(self, exc) -> None:
            self.timer.cancel()

    async def main() -> None:
        for ip, port, kind in spec["endpoints"]:
            if ipaddress.ip_address(ip) not in ipaddress.ip_network("127.0.0.0/8"):
                raise SystemExit(f"loopback only, not {ip}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(256)
            sock.setblocking(False)
            answer = answers[kind]
            await loop.create_server(lambda a=answer: Hostile(a), sock=sock)
        stop = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), stop.set)
        sys.stdout.write(json.dumps({"ready": len(spec["endpoints"])}) + "\n")
        sys.stdout.flush()
        await stop.wait()

    try:
        loop.run_until_complete(main())
    except Exception as exc:
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()


# ------------------------------------------------------------------------------ the tests


@dataclass(frozen=True)
class Planned:
    index: int
    ip: str
    port: int
    blocked_reason: str | None = None


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))


class Responder:
    """The hostile responder in a child process; stops when we close its stdin."""

    def __init__(self, targets: list[tuple[str, int, str]], cap: int) -> None:
        loopback = ipaddress.ip_network("127.0.0.0/8")
        assert all(ipaddress.ip_address(ip) in loopback for ip, _, _ in targets), "loopback only"
        self.process = subprocess.Popen([sys.executable, HERE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        close_fds=True)
        self.process.stdin.write(json.dumps({"endpoints": targets, "cap": cap}).encode() + b"\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline() or b'{"error": "responder exited"}')
        if answer.get("ready") != len(targets):
            self.stop()
            raise AssertionError(f"hostile responder did not start: {answer}")

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def instrument_buffers(monkeypatch) -> dict[str, int]:
    """Record the most a framer ever held (one PDU, plus the read that completes it) and the most
    one connection ever read, through the framer's and the connection's own counters."""
    from pacswatch.dicom.pdu import PduFramer
    from pacswatch.net import transport

    peak = {"framer": 0, "connection": 0}
    # push() where the framer has it (Association feeds it one PDU at a time), else feed().
    name = "push" if hasattr(PduFramer, "push") else "feed"
    original = getattr(PduFramer, name)

    def counting(self, data):
        peak["framer"] = max(peak["framer"], self.buffered + len(data))
        return original(self, data)

    read = transport.Connection.read

    async def counting_read(self, deadline):
        data = await read(self, deadline)
        peak["connection"] = max(peak["connection"], self.bytes_read)
        return data

    monkeypatch.setattr(PduFramer, name, counting)
    monkeypatch.setattr(transport.Connection, "read", counting_read)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_memory_stays_flat_over_10000_hostile_endpoints(monkeypatch):
    from pacswatch.net.transport import READ_CHUNK
    from pacswatch.probes.base import ProbeContext, ProbeOptions, Timeouts
    from pacswatch.probes.dicom.probe import DicomProbe
    from pacswatch.scan.runner import run_scan
    from pacswatch.status import Status

    raise_nofile(CONCURRENCY + 512)
    options = ProbeOptions(timeouts=Timeouts.scaled(5.0))
    cap = options.max_received_pdu
    targets = endpoints()
    assert len(targets) == 10_000
    kinds = {(ip, port): kind for ip, port, kind in targets}
    peak = instrument_buffers(monkeypatch)

    statuses: dict[str, int] = {}
    wrong: list[str] = []
    samples: dict[int, int] = {}

    def on_record(index, record):
        kind = kinds[(record.ip, record.port)]
        statuses[record.status] = statuses.get(record.status, 0) + 1
        # An HTTP answer gets the web probe (probes/detect.py), which finds a web server there.
        expected = Status.SUCCESS if kind == "http" else Status.PROTOCOL_ERROR
        if (record.status != expected or (kind == "http") != (record.service == "http")) and len(wrong) < 10:
            wrong.append(f"{kinds[(record.ip, record.port)]} {record.ip}:{record.port}: {record.status} {record.detail}")
        done = sum(statuses.values())
        if done in (2_000, 10_000):
            # Garbage awaiting the cyclic GC is the second test's business: measure what lives.
            gc.collect()
            samples[done] = rss()
        elif done % 250 == 0:
            samples[done] = rss()

    plan = [Planned(i, ip, port) for i, (ip, port, _) in enumerate(targets)]
    responder = Responder(targets, cap)
    try:
        gc.collect()
        baseline = rss()
        asyncio.run(run_scan(plan, lambda port: DicomProbe(), ProbeContext(options), concurrency=CONCURRENCY,
                             on_record=on_record))
    finally:
        responder.stop()

    http = sum(1 for kind in kinds.values() if kind == "http")
    assert statuses == {Status.PROTOCOL_ERROR: 10_000 - http, Status.SUCCESS: http} and not wrong, (statuses, wrong)
    highest = max(samples.values())
    report = (f"baseline {baseline / MiB:.0f} MiB, at 2,000 {samples[2_000] / MiB:.0f} MiB, "
              f"at 10,000 {samples[10_000] / MiB:.0f} MiB, highest {highest / MiB:.0f} MiB; "
              f"framer peak {peak['framer']} B, connection peak {peak['connection']} B")
    print(report)
    assert samples[10_000] - samples[2_000] < 30 * MiB, report
    # The caps hold: a framer never held more than one capped PDU plus the read completing it,
    # and no connection read more than read_cap.
    # A P-DATA-TF answering our A-ASSOCIATE-RQ is refused from its type byte (unexpected in
    # Sta5), so even the full 1 MiB P-DATA peers never get a PDU body buffered.
    assert peak["framer"] <= READ_CHUNK < cap, report
    assert peak["connection"] <= options.read_cap, report
    # Nothing ran away, even between collections, with 500 hostile peers at once.
    assert highest - baseline < 400 * MiB, report


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_failed_probe_frees_the_peers_bytes_without_waiting_for_the_cyclic_gc():
    from pacswatch.dicom.pdu import PduFramer
    from pacswatch.probes.base import ProbeContext, ProbeOptions, Timeouts
    from pacswatch.probes.dicom.probe import DicomProbe
    from pacswatch.scan.runner import run_scan
    from pacswatch.status import Status

    cap = 64 * 1024  # small PDUs: the question is whether they are freed, not how big they are
    options = ProbeOptions(timeouts=Timeouts.scaled(5.0), max_received_pdu=cap)
    targets = endpoints("127.201.1.1", addresses=4, ports=25, kinds=("full-pdata",))
    plan = [Planned(i, ip, port) for i, (ip, port, _) in enumerate(targets)]
    statuses: dict[str, int] = {}
    responder = Responder(targets, cap)
    gc.collect()
    gc.disable()
    try:
        asyncio.run(run_scan(plan, lambda port: DicomProbe(), ProbeContext(options), concurrency=20,
                             on_record=lambda i, r: statuses.__setitem__(r.status, statuses.get(r.status, 0) + 1)))
        alive = [o for o in gc.get_objects() if isinstance(o, PduFramer) and o.buffered]
    finally:
        gc.enable()
        responder.stop()
    assert statuses == {Status.PROTOCOL_ERROR: len(targets)}, statuses
    held = sum(f.buffered for f in alive)
    assert not alive, f"{len(alive)} framers of finished probes still hold {held} bytes of the peers'"


if __name__ == "__main__":
    serve()
