"""Deception verdicts against real servers on loopback (issue 15).

Controls: the real Orthanc and DCMTK servers of the interop suite are never judged traps, with
the random port check on. Traps:
- the DICOM server of the `honeypots` package (qeeqbox). Its PyPI release (0.66, the newest)
  does not ship the DICOM server yet (it is only in the repository), and installing it pulls
  twisted, impacket, scapy and older pins of cryptography, requests and urllib3 into the test
  environment. So it is rebuilt from its source in the lab (pacswatch/lab/traps.py: pynetdicom,
  AE PACS, every context, one stub handler) and run here for real on loopback;
- the lab's accept-all host (every port of its block accepts, then closes without a byte);
- the lab's tarpit (accepts, never answers) and slow drip (a byte a second);
- an echo service (RFC 862) on a DICOM port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from pacswatch.lab.hostile import HostilePeers
from pacswatch.lab.traps import AcceptAll, HoneypotServer
from probeutil import describe
from pynetdicom_server import PynetdicomServer

pytestmark = pytest.mark.interop

TRAP_NET = "127.64.7."  # this module's traps (the interop servers have their own addresses)
CHECK = {"random_ports": 4}  # the random high port check, on for every probe here


def not_a_trap(record) -> bool:
    return record.deception is None or record.deception.verdict is None


def test_open_orthanc_is_not_a_trap(run_probe, orthanc_open):
    r = run_probe(orthanc_open, **CHECK)
    assert r.severity == "critical", describe(r)
    assert not_a_trap(r), describe(r)
    assert r.behaviour is not None and r.behaviour.random_ports is not None
    assert len(r.behaviour.random_ports.tried) == 4 and r.behaviour.random_ports.open == []
    assert r.dicom.find.random_matches == 0  # the permission check's made-up UID matched nothing


def test_default_orthanc_is_not_a_trap(run_probe, orthanc_default):
    r = run_probe(orthanc_default, **CHECK)
    assert r.status in ("success", "rejected"), describe(r)
    assert not_a_trap(r), describe(r)


def test_dcmqrscp_is_not_a_trap(run_probe, dcmqrscp):
    r = run_probe(dcmqrscp, ae_guess=(dcmqrscp.ae_title,), **CHECK)
    assert r.severity == "critical", describe(r)
    assert r.deception is None, describe(r)  # not one signal


def test_storescp_is_not_a_trap(run_probe, storescp):
    # storescp accepts any called AE and every storage class offered: close to a honeypot's
    # openness, but it refuses the made-up class and speaks DCMTK truthfully.
    r = run_probe(storescp, **CHECK)
    assert r.severity == "high", describe(r)
    assert r.deception is None, describe(r)


def test_the_honeypots_dicom_server_is_a_honeypot(run_probe):
    server = HoneypotServer(TRAP_NET + "28", 0)
    server.start()
    try:
        r = run_probe(server.ip, server.port, **CHECK)
    finally:
        server.stop()
    assert r.status == "success" and r.severity == "high", describe(r)  # what it exposes is still reported
    assert r.dicom.find.refusal == "status 0xC311"
    assert r.deception.verdict == "honeypot" and r.deception.confidence >= 0.7, describe(r)
    assert [s.name for s in r.deception.signals] == ["stub-find-handler"]
    assert "qeeqbox/honeypots" in r.deception.signals[0].source


class WrongLevelServer(PynetdicomServer):
    """A pynetdicom SCP whose C-FIND answers a universal STUDY query with PATIENT-level
    identifiers (one canned answer, as a stub has): level PATIENT, a PatientID and a name, no
    StudyInstanceUID. The permission check's made-up UID still matches nothing, so that this is
    the only signal."""

    def _on_find(self, event):
        from pydicom.dataset import Dataset

        identifier = event.identifier
        if str(identifier.get("StudyInstanceUID", "")) or str(identifier.get("PatientID", "")):
            yield 0x0000, None
            return
        for n in range(4 if identifier.QueryRetrieveLevel == "STUDY" else 3):
            ds = Dataset()
            ds.QueryRetrieveLevel = "PATIENT"
            ds.PatientID = f"PWLEAK-LEVEL-{n}"
            ds.PatientName = "PWLEAK^LEVEL"
            yield 0xFF00, ds
        yield 0x0000, None


def test_find_answers_at_another_level_are_a_signal(run_probe):
    server = WrongLevelServer(TRAP_NET + "31", 0).start()
    try:
        r = run_probe(server.ip, server.port, **CHECK)
    finally:
        server.stop()
    assert r.dicom.find.allowed and r.dicom.find.random_matches == 0, describe(r)
    # Universal queries: 4 answers to the STUDY one, none at that level; the 3 to the PATIENT
    # one carry that level and its key.
    assert r.dicom.find.studies == 4 and r.dicom.find.patients == 3, describe(r)
    assert r.dicom.find.off_level_identifiers == 4, describe(r)
    assert [s.name for s in r.deception.signals] == ["off-level-find"], describe(r)
    assert r.deception.verdict == "honeypot" and r.deception.confidence == 0.6
    assert "PWLEAK" not in r.model_dump_json()  # a count, never the identifiers' values


def test_real_servers_answer_at_the_level_asked(run_probe, pynetdicom_open, dcmqrscp, orthanc_open):
    for server, options in ((pynetdicom_open, {}), (dcmqrscp, {"ae_guess": (dcmqrscp.ae_title,)}),
                            (orthanc_open, {})):
        r = run_probe(server, **options)
        assert r.dicom.find.allowed and (r.dicom.find.studies or 0) > 0, describe(r)
        assert r.dicom.find.off_level_identifiers == 0, describe(r)


def test_the_accept_all_host_is_accepts_all(run_probe):
    host = AcceptAll(TRAP_NET + "29", 0, None)
    host.start()
    try:
        assert host.block is not None
        r = run_probe(host.ip, host.port, random_ports=4, random_port_range=host.block)
        without = run_probe(host.ip, host.port)  # no random port check: one weak sign only
    finally:
        host.stop()
    assert r.deception.verdict == "accepts-all" and r.deception.confidence >= 0.9, describe(r)
    assert len(r.behaviour.random_ports.open) == 4
    assert {s.name for s in r.deception.signals} == {"silent-close", "random-ports-open"}
    assert without.deception.verdict is None and [s.name for s in without.deception.signals] == ["silent-close"]


@pytest.mark.parametrize("kind", ["tarpit", "slow-drip"])
def test_the_hostile_tarpits_are_tarpits(run_probe, kind):
    peers = HostilePeers([(kind, TRAP_NET + "18", 0)], hold=30, drip_interval=0.5)
    (port,) = peers.start()
    try:
        r = run_probe(TRAP_NET + "18", port, timeouts=_short())
    finally:
        peers.stop()
    assert r.status == "io-timeout", describe(r)
    assert r.deception.verdict == "tarpit", describe(r)
    assert r.deception.signals[0].name == ("silent-hold" if kind == "tarpit" else "slow-drip")


def test_an_echo_service_is_a_honeypot(run_probe):
    loop = asyncio.new_event_loop()
    box: dict = {}

    async def echo(reader, writer):
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve():
        box["server"] = await asyncio.start_server(echo, TRAP_NET + "7", 0)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(5)
    port = box["server"].sockets[0].getsockname()[1]
    try:
        r = run_probe(TRAP_NET + "7", port, timeouts=_short())
    finally:
        loop.call_soon_threadsafe(box["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert r.behaviour is not None and r.behaviour.echoed is True, describe(r)
    assert r.deception.verdict == "honeypot", describe(r)


def _short():
    from pacswatch.probes.base import Timeouts

    return Timeouts.scaled(1.0)
