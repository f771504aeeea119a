"""The runner: bounded concurrency, every endpoint once, blocked ones reported, stop honoured.

The probe here is a stand-in that only sleeps: these tests are about the runner's scheduling,
which does not depend on what a probe does on the wire.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pacswatch.probes.base import ProbeContext
from pacswatch.record import AssociationFacts, DicomFacts, Find, Record
from pacswatch.scan.runner import run_scan
from pacswatch.status import Status


@dataclass
class Planned:
    index: int
    ip: str
    port: int
    blocked_reason: str | None = None


class SleepyProbe:
    name = "sleepy"
    default_ports = (1,)

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.seen = []

    async def run(self, ctx, endpoint):
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.seen.append((endpoint.ip, endpoint.port))
        await asyncio.sleep(0.001)
        self.active -= 1
        return Record(ip=endpoint.ip, port=endpoint.port, status=Status.CONNECTION_REFUSED)


def test_concurrency_is_bounded_and_each_endpoint_done_once():
    probe = SleepyProbe()
    plan = [Planned(i, f"127.0.{i // 256}.{i % 256}", 104) for i in range(500)]
    out = []
    stats = asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=17,
                                 on_record=lambda i, r: out.append(i)))
    assert probe.peak == 17
    assert sorted(out) == list(range(500))
    assert stats.done == 500 and stats.by_status[Status.CONNECTION_REFUSED] == 500


def test_blocked_endpoints_are_reported_not_probed():
    probe = SleepyProbe()
    plan = [Planned(0, "127.0.0.1", 104), Planned(1, "192.0.2.1", 104, "documentation range")]
    records = {}
    asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=4,
                         on_record=lambda i, r: records.__setitem__(i, r)))
    assert probe.seen == [("127.0.0.1", 104)]
    assert records[1].status == Status.BLOCKED and records[1].detail == "documentation range"


def test_stop_event_ends_the_scan_early():
    probe = SleepyProbe()
    plan = (Planned(i, "127.0.0.1", 1000 + i) for i in range(10_000))
    stop = asyncio.Event()
    done = []

    def on_record(i, r):
        done.append(i)
        if len(done) == 50:
            stop.set()

    asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=5, on_record=on_record, stop=stop))
    assert 50 <= len(done) < 60


class OpenArchiveProbe:
    """Returns the facts of an archive that lists studies to anyone, and no assessment."""

    name = "open-archive"
    default_ports = (104,)

    async def run(self, ctx, endpoint):
        facts = DicomFacts(association=AssociationFacts(accepted=True), accepts_any_called_ae=True,
                           find=Find(allowed=True, studies=3))
        return Record(ip=endpoint.ip, port=endpoint.port, status=Status.SUCCESS, service="dicom", dicom=facts)


def test_the_runner_assesses_what_the_probe_found():
    # Probes return facts; the runner adds the severity and reasons (assess.py), once.
    records = []
    asyncio.run(run_scan([Planned(0, "127.62.0.1", 104)], lambda port: OpenArchiveProbe(), ProbeContext(),
                         concurrency=1, on_record=lambda i, r: records.append(r)))
    (record,) = records
    assert record.severity == "critical" and any("3 studies" in reason for reason in record.reasons), record


def test_the_dicom_probe_leaves_the_assessment_to_the_runner():
    from pacswatch.lab.acceptor import Acceptor
    from pacswatch.probes.base import Endpoint, ProbeOptions, Timeouts
    from pacswatch.probes.dicom.probe import DicomProbe
    from pacswatch.scan.runner import probe_endpoint

    async def serve(reader, writer):  # the lab's acceptor: any caller, C-ECHO, C-FIND with no match
        acceptor = Acceptor()
        while data := await reader.read(65536):
            out, close = acceptor.receive(data)
            writer.write(out)
            if close:
                break
        writer.close()

    async def probe_twice():
        server = await asyncio.start_server(serve, "127.62.0.2", 0)
        endpoint = Endpoint("127.62.0.2", server.sockets[0].getsockname()[1])
        ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(2.0), ae_guess=()))
        try:
            return await DicomProbe().run(ctx, endpoint), await probe_endpoint(DicomProbe(), ctx, endpoint)
        finally:
            server.close()

    bare, assessed = asyncio.run(probe_twice())
    assert bare.status == assessed.status == "success" and bare.dicom.find.allowed is True, bare
    assert bare.severity is None and bare.reasons == []
    assert assessed.severity == "high" and assessed.reasons
