"""The benchmark's C responder (bench/responder.c, driven by bench/c_responder.py): built with gcc,
scanned by pacswatch's real probe, checked by an independent requestor (pynetdicom) and with raw
bytes: split and batched PDUs, absurd lengths, non-DICOM bytes, refusal of non-loopback
addresses, and exit when stdin closes. Loopback only."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom import sop_class as sc

from pacswatch.dicom import uids
from pacswatch.dicom.dimse import c_echo_rq, c_find_rq, decode_command, encode_command, fragment_message
from pacswatch.dicom.identifiers import study_query
from pacswatch.dicom.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PduFramer,
    PresentationContextRQ,
    encode_pdu,
)
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.scan.runner import probe_endpoint

from lab_client import CONTROL, RawClient, rq

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = [f"127.88.0.{i}" for i in range(1, 8)]
PORTS = [11112, 4242, 2761]  # all above 1024: no privilege needed


def _load_module():
    spec = importlib.util.spec_from_file_location("c_responder_under_test", ROOT / "bench" / "c_responder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


c_responder = _load_module()


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    return c_responder.build(tmp_path_factory.mktemp("c-responder-build"))


@pytest.fixture(scope="module")
def responder(binary):
    with c_responder.CResponder(ADDRESSES, PORTS, threads=2, backlog=256, binary=binary) as running:
        yield running


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recv_pdus(sock: socket.socket, count: int, timeout: float = 5.0) -> list:
    framer = PduFramer(1 << 20)
    pdus: list = []
    sock.settimeout(timeout)
    while len(pdus) < count:
        data = sock.recv(65536)
        if not data:
            raise EOFError(f"closed after {len(pdus)} PDUs")
        pdus.extend(framer.feed(data))
    return pdus


def closes_or_aborts(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read to EOF (or a reset); return what came first. Fails if the peer keeps it open."""
    sock.settimeout(timeout)
    received = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return received
            received += data
    except ConnectionResetError:
        return received


def test_build_is_cached_and_names_gcc_when_missing(binary, tmp_path, monkeypatch):
    assert binary.is_file() and os.access(binary, os.X_OK)
    mtime = binary.stat().st_mtime_ns
    assert c_responder.build(binary.parent) == binary
    assert binary.stat().st_mtime_ns == mtime  # not rebuilt: the source is older
    monkeypatch.setattr(c_responder.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="gcc"):
        c_responder.build(tmp_path / "fresh")


def test_compiles_without_warnings(tmp_path):
    done = subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE", "-o", str(tmp_path / "r"),
         str(ROOT / "bench" / "responder.c")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_pacswatch_probe_gets_every_endpoint_right(responder):
    assert len(responder.endpoints) == len(ADDRESSES) * len(PORTS) == 21
    timeouts = Timeouts.scaled(1.0)

    async def scan():
        ctx = ProbeContext(ProbeOptions(timeouts=timeouts))
        return await asyncio.gather(*(probe_endpoint(DicomProbe(), ctx, Endpoint(ip, port)) for ip, port in responder.endpoints))

    records = asyncio.run(scan())
    for record in records:
        facts = record.dicom
        assert record.status == "success", (record.ip, record.port, record.detail)
        assert facts.association.accepted
        assert facts.association.implementation_version_name == "PW_C_RESP"
        assert facts.association.max_pdu_length == 16384
        assert facts.echo is True
        assert facts.find.allowed is True
        assert facts.find.studies == 0 and facts.find.patients == 0
        assert facts.released is True
        assert facts.promiscuous is False  # the random 2.25 control context was refused
        assert facts.store_accepted and facts.move_accepted and facts.get_accepted
    assert {(r.ip, r.port) for r in records} == set(responder.endpoints)


def test_pynetdicom_echo_find_release(responder):
    for ip, port in responder.endpoints[::5]:
        ae = AE(ae_title="PWTEST")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        for syntax in (sc.Verification, sc.StudyRootQueryRetrieveInformationModelFind,
                       sc.PatientRootQueryRetrieveInformationModelFind, CONTROL):
            ae.add_requested_context(syntax)
        assoc = ae.associate(ip, port, ae_title="RANDOMCALLED")
        try:
            assert assoc.is_established
            assert {str(c.abstract_syntax) for c in assoc.accepted_contexts} == {
                str(sc.Verification), str(sc.StudyRootQueryRetrieveInformationModelFind),
                str(sc.PatientRootQueryRetrieveInformationModelFind)}
            assert [str(c.abstract_syntax) for c in assoc.rejected_contexts] == [CONTROL]
            assert assoc.send_c_echo().Status == 0x0000
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            responses = list(assoc.send_c_find(query, sc.StudyRootQueryRetrieveInformationModelFind))
            assert len(responses) == 1  # no pending: zero matches
            status, identifier = responses[0]
            assert status.Status == 0x0000 and identifier is None
            assoc.release()
            assert assoc.is_released
        finally:
            if assoc.is_alive():
                assoc.abort()


def test_contexts_results_follow_ps38(responder):
    ip, port = responder.endpoints[0]
    base = rq(syntaxes=(uids.VERIFICATION, CONTROL))
    # A third context proposing only Explicit VR LE: transfer-syntaxes-not-supported (4).
    explicit_only = PresentationContextRQ(5, uids.STUDY_ROOT_FIND, ("1.2.840.10008.1.2.1",))
    request = AAssociateRQ(base.called_ae, base.calling_ae, base.contexts + (explicit_only,), base.user_info)
    with RawClient(ip, port) as client:
        client.send(request)
        ac = client.recv_pdu()
        assert isinstance(ac, AAssociateAC)
        assert (ac.called_ae, ac.calling_ae) == ("ANY-SCP", "LABTEST")  # echoed as received
        assert [(c.id, c.result, c.transfer_syntax) for c in ac.contexts] == [
            (1, 0, uids.IMPLICIT_VR_LE), (3, 3, uids.IMPLICIT_VR_LE), (5, 4, "1.2.840.10008.1.2.1")]
        assert ac.user_info.implementation_class_uid.startswith("2.25.")
        assert ac.user_info.implementation_version_name == "PW_C_RESP"
        client.send(AReleaseRQ())
        assert isinstance(client.recv_pdu(), AReleaseRP)


def test_non_loopback_address_is_refused_before_any_socket(binary, responder):
    with pytest.raises(ValueError, match="loopback"):
        c_responder.CResponder(["192.0.2.1"], [11112])
    # An endpoint already bound (by the fixture) comes first: had the responder bound anything
    # before checking every address, it would fail on that bind (exit 1) instead.
    busy_ip, busy_port = responder.endpoints[0]
    done = subprocess.run([str(binary)], input=f"{busy_ip} {busy_port}\n192.0.2.1 11112\nEND\n",
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert "192.0.2.1" in done.stderr and "loopback" in done.stderr
    assert "READY" not in done.stdout
    # The same file without the bad line: now the busy endpoint is what fails.
    done = subprocess.run([str(binary)], input=f"{busy_ip} {busy_port}\nEND\n",
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 1 and "cannot listen" in done.stderr


def test_split_batched_and_fragmented_pdus(responder):
    ip, port = responder.endpoints[1]
    # The A-ASSOCIATE-RQ one byte at a time.
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in encode_pdu(rq()):
            sock.sendall(bytes([byte]))
            time.sleep(0.001)
        (ac,) = recv_pdus(sock, 1)
        assert isinstance(ac, AAssociateAC) and [c.result for c in ac.contexts] == [0, 0, 3]
        # A C-ECHO command fragmented into 3-byte PDVs, each in its own P-DATA-TF (max PDU 9).
        for pdu in fragment_message(1, encode_command(c_echo_rq(7)), None, 9):
            sock.sendall(encode_pdu(pdu))
        (rsp,) = recv_pdus(sock, 1)
        command = decode_command(rsp.pdvs[0].data)
        assert (command.command_field, command.message_id_being_responded_to, command.status) == (0x8030, 7, 0)
        assert rsp.pdvs[0].context_id == 1 and rsp.pdvs[0].is_command and rsp.pdvs[0].is_last
    # Everything in one send: RQ, C-ECHO, C-FIND with its data set, A-RELEASE-RQ.
    batch = encode_pdu(rq()) + b"".join(
        encode_pdu(p) for p in fragment_message(1, encode_command(c_echo_rq(1)), None, 16384)
    ) + b"".join(
        encode_pdu(p) for p in fragment_message(3, encode_command(c_find_rq(2, uids.STUDY_ROOT_FIND)),
                                                study_query(), 16384)
    ) + encode_pdu(AReleaseRQ())
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(batch)
        ac, echo, find, rp = recv_pdus(sock, 4)
        assert isinstance(ac, AAssociateAC)
        assert decode_command(echo.pdvs[0].data).command_field == 0x8030
        find_rsp = decode_command(find.pdvs[0].data)
        assert (find_rsp.command_field, find_rsp.status, find_rsp.has_data_set) == (0x8020, 0, False)
        assert find_rsp.affected_sop_class_uid == uids.STUDY_ROOT_FIND
        assert isinstance(rp, AReleaseRP)
        sock.sendall(b"\x07")  # bytes after the release: it closes without a word
        assert closes_or_aborts(sock) == b""


def test_small_peer_max_pdu_fragments_the_response(responder):
    ip, port = responder.endpoints[2]
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(encode_pdu(rq(max_length=20)))
        recv_pdus(sock, 1)
        sock.sendall(b"".join(encode_pdu(p) for p in fragment_message(1, encode_command(c_echo_rq(3)), None, 16384)))
        framer = PduFramer(1 << 20)
        data, pdvs = b"", []
        sock.settimeout(5)
        while not (pdvs and pdvs[-1].is_last):
            for pdu in framer.feed(sock.recv(65536)):
                assert len(encode_pdu(pdu)) - 6 <= 20
                pdvs.extend(pdu.pdvs)
        assert len(pdvs) > 1 and all(p.is_command for p in pdvs)
        data = b"".join(p.data for p in pdvs)
        assert decode_command(data).command_field == 0x8030


@pytest.mark.parametrize("garbage", [
    b"\x04\x00\xff\xff\xff\xff",           # P-DATA-TF claiming 4 GiB
    b"\x01\x00\xff\xff\xff\xff",           # A-ASSOCIATE-RQ claiming 4 GiB
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not DICOM at all
    b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00",  # A-RELEASE-RQ before any association
])
def test_hostile_bytes_get_an_abort_or_a_close_and_others_are_served(responder, garbage):
    ip, port = responder.endpoints[3]
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(garbage)
        received = closes_or_aborts(sock)
        if received:
            (abort,) = PduFramer(1 << 20).feed(received)
            assert isinstance(abort, AAbort) and abort.source == 2
    # Also after an accepted association: the absurd P-DATA length aborts it.
    with RawClient(ip, port) as client:
        client.send(rq())
        assert isinstance(client.recv_pdu(), AAssociateAC)
        client.sock.sendall(b"\x04\x00\xff\xff\xff\xff")
        received = closes_or_aborts(client.sock)
        assert received == b"" or isinstance(PduFramer(1 << 20).feed(received)[0], AAbort)
    # The responder keeps serving.
    with RawClient(ip, port) as client:
        client.send(rq())
        assert isinstance(client.recv_pdu(), AAssociateAC)
        assert client.echo().status == 0


def test_a_peer_abort_closes(responder):
    ip, port = responder.endpoints[4]
    with RawClient(ip, port) as client:
        client.send(rq())
        assert isinstance(client.recv_pdu(), AAssociateAC)
        client.send(AAbort(0, 0))
        assert closes_or_aborts(client.sock) == b""


def test_many_connections_at_once(responder):
    socks = []
    try:
        for ip, port in responder.endpoints * 10:
            sock = socket.create_connection((ip, port), timeout=5)
            sock.sendall(encode_pdu(rq()))
            socks.append(sock)
        for sock in socks:
            (ac,) = recv_pdus(sock, 1)
            assert isinstance(ac, AAssociateAC)
    finally:
        for sock in socks:
            sock.close()


def test_exits_when_stdin_closes(binary):
    responder = c_responder.CResponder(["127.88.1.1", "127.88.1.2"], [11112, 4242], threads=2, binary=binary)
    responder.start()
    try:
        (pid,) = responder.pids
        process = psutil.Process(pid)
        assert process.num_threads() == 2
        with RawClient("127.88.1.2", 4242) as client:  # an open association does not keep it alive
            client.send(rq())
            assert isinstance(client.recv_pdu(), AAssociateAC)
            responder.process.stdin.close()
            assert responder.process.wait(5) == 0
            assert closes_or_aborts(client.sock) == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.88.1.1", 11112), timeout=1)
    finally:
        responder.stop()
    assert not alive(process)
    assert responder.pids == []


def test_exits_when_its_parent_dies(binary):
    # The parent holds the only write end of the responder's stdin; killing the parent is EOF.
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([{str(binary)!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "p.stdin.write(b'127.88.2.1 11112\\nEND\\n'); p.stdin.flush()\n"
        "print(p.pid, p.stdout.readline().decode().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, ready = parent.stdout.readline().split(" ", 1)
        assert ready.strip() == "READY 1"
        child = psutil.Process(int(pid))
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:  # a zombie until init reaps it
            time.sleep(0.05)
        assert not alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        parent.stdout.close()


def test_binds_high_ports_without_root(binary):
    """The ports used here (> 1024) need no privilege: run the binary as `nobody` when we are root."""
    if os.geteuid() != 0:
        command = [str(binary)]
        work = None
    else:
        work = tempfile.mkdtemp(prefix="c-responder-")
        os.chmod(work, 0o755)
        copy = Path(work) / "responder"
        shutil.copy(binary, copy)
        os.chmod(copy, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(copy)]
    try:
        endpoints = "".join(f"127.88.3.1 {port}\n" for port in PORTS) + "END\n"
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            process.stdin.write(endpoints.encode())
            process.stdin.flush()
            assert process.stdout.readline() == b"READY 3\n", process.stderr.read()
            if os.geteuid() == 0:
                assert psutil.Process(process.pid).uids().effective == 65534
            with RawClient("127.88.3.1", 2761) as client:
                client.send(rq())
                assert isinstance(client.recv_pdu(), AAssociateAC)
                assert client.echo().status == 0
        finally:
            process.stdin.close()
            assert process.wait(5) == 0
            process.stdout.close()
            process.stderr.close()
    finally:
        if work is not None:
            shutil.rmtree(work)


def test_bad_input_lines_exit_2(binary):
    for text in ("127.88.4.1\nEND\n", "127.88.4.1 70000\nEND\n", "localhost 11112\nEND\n",
                 "127.88.4.1 11112 extra\nEND\n", "::1 11112\nEND\n"):
        done = subprocess.run([str(binary)], input=text, capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and done.stderr, text
        assert "READY" not in done.stdout


def test_stop_reports_start_failures(binary, responder):
    busy_ip, busy_port = responder.endpoints[0]
    other = c_responder.CResponder([busy_ip], [busy_port], binary=binary)
    with pytest.raises(OSError, match="cannot listen"):
        other.start(timeout=10)
    assert other.pids == []


def test_rq_with_missing_application_context_is_aborted(responder):
    ip, port = responder.endpoints[5]
    good = encode_pdu(rq())
    body = bytearray(good[6:])
    # Items start after the 68 fixed bytes; the application context item comes first.
    assert body[68] == 0x10
    length = struct.unpack(">H", body[70:72])[0]
    del body[68:72 + length]
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">I", len(body)) + bytes(body))
        received = closes_or_aborts(sock)
        assert received == b"" or isinstance(PduFramer(1 << 20).feed(received)[0], AAbort)


def test_a_requestor_that_never_closes_after_release_is_closed_after_artim(responder):
    ip, port = responder.endpoints[6]
    with RawClient(ip, port) as client:
        client.send(rq())
        assert isinstance(client.recv_pdu(), AAssociateAC)
        client.send(AReleaseRQ())
        assert isinstance(client.recv_pdu(), AReleaseRP)
        started = time.monotonic()
        assert closes_or_aborts(client.sock, timeout=10) == b""
        assert 3.5 < time.monotonic() - started < 8.0  # ARTIM: 5 s, swept every second


def test_coalescing_changes_nothing_on_the_wire(binary):
    addresses = ["127.88.5.1", "127.88.5.2"]
    with c_responder.CResponder(addresses, [11112], coalesce_us=1000, binary=binary) as running:
        async def scan():
            ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(1.0)))
            return await asyncio.gather(*(probe_endpoint(DicomProbe(), ctx, Endpoint(ip, port)) for ip, port in running.endpoints))

        for record in asyncio.run(scan()):
            assert record.status == "success", record.detail
            assert record.dicom.echo and record.dicom.find.allowed and record.dicom.released
            assert (record.dicom.find.studies, record.dicom.find.patients, record.dicom.promiscuous) == (0, 0, False)
