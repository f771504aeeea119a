"""The C responder's per-endpoint behaviours (bench/responder.c PROFILES, drawn by
bench/internet_mix.py): each profile scanned by pacswatch's real probe and judged by the
benchmark's own completeness check, the reply delay measured on a raw socket, C-FIND matches
counted by an independent requestor (pynetdicom), and the check shown to catch a wrong fact.
Loopback only."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_client import RawClient, rq
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom import sop_class as sc

from pacswatch.dicom.pdu import AAssociateAC
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.detect import quiet_check_after
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.scan.runner import probe_endpoint

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # internet_mix imports its neighbours
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


c_responder = _load("c_responder")
internet_mix = _load("internet_mix")
Mixed = internet_mix.Endpoint

PORT = 11112
# One endpoint per profile (127.89.0.x), short delays; archives with matches to count.
ENDPOINTS = {
    "orthanc": Mixed("orthanc", 30, 7, 3),
    "dcmtk-storescp": Mixed("dcmtk-storescp", 25, 0, 0),
    "dcm4chee": Mixed("dcm4chee", 20, 2, 5),
    "pynetdicom-echo": Mixed("pynetdicom-echo", 40, 0, 0),
    "conquest": Mixed("conquest", 20, 0, 0),
    "reject-called": Mixed("reject-called", 20, 0, 0),
    "reject-calling": Mixed("reject-calling", 20, 0, 0),
    "reject-busy": Mixed("reject-busy", 20, 0, 0),
    "silent": Mixed("silent", 20, 0, 0),
    "closed": Mixed("closed", 20, 0, 0),
    "garbage": Mixed("garbage", 20, 0, 0),
    "abort": Mixed("abort", 20, 0, 0),
    "drip": Mixed("drip", 200, 0, 0),
}
ADDRESS = {name: f"127.89.0.{i + 1}" for i, name in enumerate(ENDPOINTS)}
SLOW, QUICK = "127.89.1.1", "127.89.1.2"  # an accepting endpoint with a 250 ms delay, one with none
LATE = "127.89.1.3"  # an Orthanc-like archive whose every reply waits 900 ms


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    return c_responder.build(tmp_path_factory.mktemp("mix-responder-build"))


@pytest.fixture(scope="module")
def responder(binary):
    behaviour = {(ADDRESS[name], PORT): f"{e.profile} {e.delay_ms} {e.studies} {e.patients}"
                 for name, e in ENDPOINTS.items() if name != "closed"}
    behaviour[SLOW, PORT] = "accept 250 0 0"
    behaviour[QUICK, PORT] = "accept 0 0 0"
    behaviour[LATE, PORT] = "orthanc 900 4 2"
    with c_responder.CResponder(behaviour=behaviour, threads=2, binary=binary) as running:
        yield running


def test_every_profile_is_reported_as_the_mix_says(responder):
    assert (ADDRESS["closed"], PORT) not in responder.endpoints  # left out: a refused connection

    async def scan():
        ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(1.0)))
        probe = DicomProbe()
        return await asyncio.gather(*(probe_endpoint(probe, ctx, Endpoint(ADDRESS[name], PORT)) for name in ENDPOINTS))

    records = asyncio.run(scan())
    for name, record in zip(ENDPOINTS, records, strict=True):
        as_json = json.loads(record.model_dump_json())
        assert internet_mix.pacswatch_wrong(as_json, ENDPOINTS[name]) is None, (name, record.status, record.detail)
    by_name = dict(zip(ENDPOINTS, records, strict=True))
    assert by_name["orthanc"].dicom.find.studies == 7 and by_name["orthanc"].dicom.find.patients == 3
    assert by_name["dcm4chee"].dicom.called_ae_found == "DCM4CHEE"
    assert by_name["conquest"].dicom.promiscuous is True


def test_a_dicom_server_slower_than_the_web_check_start_is_still_found(responder):
    # --timeout 0.5: the association waits 1 s and the GET of the web check starts at 0.5 s
    # (detect.quiet_check_after); this archive's A-ASSOCIATE-AC comes at 0.9 s, after the GET
    # went out on a second connection, so it is DICOM that must be reported, with every fact.
    timeouts = Timeouts.scaled(0.5)
    assert quiet_check_after(timeouts.association, timeouts.http) < 0.9 < timeouts.association

    async def scan():
        ctx = ProbeContext(ProbeOptions(timeouts=timeouts))
        return await DicomProbe().run(ctx, Endpoint(LATE, PORT))

    record = json.loads(asyncio.run(scan()).model_dump_json())
    assert internet_mix.pacswatch_wrong(record, Mixed("orthanc", 900, 4, 2)) is None, record


def test_the_check_catches_wrong_facts(responder):
    async def scan():
        ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(1.0)))
        return await probe_endpoint(DicomProbe(), ctx, Endpoint(ADDRESS["orthanc"], PORT))

    record = json.loads(asyncio.run(scan()).model_dump_json())
    orthanc = ENDPOINTS["orthanc"]
    assert internet_mix.pacswatch_wrong(record, orthanc) is None
    assert "studies" in internet_mix.pacswatch_wrong(record, Mixed("orthanc", 30, 8, 3))
    assert "version name" in internet_mix.pacswatch_wrong(record, Mixed("dcmtk-storescp", 30, 0, 0))
    assert "status" in internet_mix.pacswatch_wrong(record, Mixed("silent", 30, 0, 0))


def _seconds_to_answer(ip: str) -> tuple[float, float]:
    """Seconds from A-ASSOCIATE-RQ to the AC, and from C-ECHO-RQ to its response."""
    with RawClient(ip, PORT) as client:
        started = time.monotonic()
        client.send(rq())
        assert isinstance(client.recv_pdu(), AAssociateAC)
        associated = time.monotonic()
        assert client.echo().status == 0
        return associated - started, time.monotonic() - associated


def test_each_reply_waits_for_the_endpoint_delay(responder):
    for seconds in _seconds_to_answer(SLOW):
        assert 0.245 <= seconds < 0.6, seconds
    for seconds in _seconds_to_answer(QUICK):
        assert seconds < 0.1, seconds


def test_drip_sends_the_header_then_a_byte_per_delay(responder):
    with socket.create_connection((ADDRESS["drip"], PORT), timeout=5) as sock:
        from pacswatch.dicom.pdu import encode_pdu

        started = time.monotonic()
        sock.sendall(encode_pdu(rq()))
        header = sock.recv(100)
        assert header[:2] == b"\x02\x00" and len(header) == 6  # an A-ASSOCIATE-AC's header alone
        assert time.monotonic() - started >= 0.195
        nxt = sock.recv(100)
        assert len(nxt) == 1 and time.monotonic() - started >= 0.395


def test_find_matches_seen_by_pynetdicom(responder):
    ae = AE(ae_title="MIXTEST")
    ae.add_requested_context(sc.StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(sc.PatientRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(ADDRESS["orthanc"], PORT, ae_title="ANY")
    assert assoc.is_established
    try:
        def count(model, level: str, key: str, value: str) -> int:
            query = Dataset()
            query.QueryRetrieveLevel = level
            setattr(query, key, value)
            statuses = [status.Status for status, _ in assoc.send_c_find(query, model)]
            assert statuses[-1] == 0x0000
            return sum(s == 0xFF00 for s in statuses)

        assert count(sc.StudyRootQueryRetrieveInformationModelFind, "STUDY", "StudyInstanceUID", "") == 7
        assert count(sc.PatientRootQueryRetrieveInformationModelFind, "PATIENT", "PatientID", "") == 3
        assert count(sc.StudyRootQueryRetrieveInformationModelFind, "STUDY", "StudyInstanceUID", "2.25.99") == 0
    finally:
        assoc.release()


def test_a_bad_behaviour_field_exits_2(binary):
    for text in ("127.89.4.1 11112 nosuch 20 0 0\nEND\n", "127.89.4.1 11112 accept 2000 0 0\nEND\n",
                 "127.89.4.1 11112 accept 20\nEND\n", "127.89.4.1 11112 accept 20 0 0 extra\nEND\n"):
        done = subprocess.run([str(binary)], check=False, input=text, capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and done.stderr, text
        assert "READY" not in done.stdout
