"""The hostile peers, checked with raw sockets."""

import socket
import time

import pytest

from pacswatch.dicom.dimse import c_echo_rq
from pacswatch.dicom.pdu import AAbort, AAssociateAC, PduFramer, encode_pdu
from pacswatch.lab.hostile import HUGE_HEADER, HostilePeers

from lab_client import RawClient, rq

REQUEST = encode_pdu(rq())


def connect(endpoint, timeout=2.0) -> socket.socket:
    sock = socket.create_connection(endpoint.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_for(sock, seconds: float) -> bytes:
    """Everything received within `seconds` (the connection staying open)."""
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    return data


def test_tarpit_says_nothing_and_stays_open(lab):
    with connect(lab.endpoint("tarpit")) as sock:
        sock.sendall(REQUEST)
        assert read_for(sock, 0.5) == b""


def test_huge_length_claims_four_gigabytes_then_drips(lab):
    with connect(lab.endpoint("huge-length")) as sock:
        sock.sendall(REQUEST)
        data = read_for(sock, 0.5)  # drip interval is 0.05 s in the test lab
        assert data.startswith(HUGE_HEADER)
        assert len(data) > len(HUGE_HEADER)
        with pytest.raises(Exception) as info:
            PduFramer(1 << 20).feed(data)
        assert "A-ASSOCIATE length" in str(info.value)


def test_random_bytes_are_not_dicom(lab):
    with connect(lab.endpoint("random-bytes")) as sock:
        sock.sendall(REQUEST)
        data = read_for(sock, 0.3)
        assert len(data) >= 1 and data[0] >= 0x80


def test_slow_drip_sends_a_valid_ac_one_byte_at_a_time():
    peers = HostilePeers([("slow-drip", "127.43.254.21", 0)], drip_interval=0.002)
    (port,) = peers.start()
    try:
        with socket.create_connection(("127.43.254.21", port), timeout=5) as sock:
            sock.sendall(REQUEST)
            framer, pdus, reads = PduFramer(1 << 20), [], 0
            while not pdus:
                chunk = sock.recv(65536)
                assert chunk, "closed before the AC was complete"
                reads += 1
                pdus = framer.feed(chunk)
            assert isinstance(pdus[0], AAssociateAC)
            assert reads > 20  # it really came in drips
    finally:
        peers.stop()


def test_slow_drip_in_the_lab_is_slow(lab):
    with connect(lab.endpoint("slow-drip")) as sock:
        sock.sendall(REQUEST)
        data = read_for(sock, 0.3)
        assert data[:1] == b"\x02" and len(data) < 30


def test_abort_after_request_accepts_then_aborts(lab):
    endpoint = lab.endpoint("abort-after-request")
    with RawClient(*endpoint.address) as client:
        client.send(rq())
        ac = client.recv_pdu()
        assert isinstance(ac, AAssociateAC)
        assert [c.result for c in ac.contexts] == [0, 0, 3]  # echo and FIND; not the control
        client.send_message(1, c_echo_rq(1))
        assert isinstance(client.recv_pdu(), AAbort)


def test_http_not_dicom_answers_like_http(lab):
    with connect(lab.endpoint("http-not-dicom")) as sock:
        sock.sendall(REQUEST)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_http_not_dicom_answers_a_real_http_request(lab):
    with connect(lab.endpoint("http-not-dicom")) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")


def test_reset_resets(lab):
    with connect(lab.endpoint("reset")) as sock:
        sock.sendall(REQUEST)
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)
            sock.recv(65536)


def test_stop_closes_held_connections():
    peers = HostilePeers([("tarpit", "127.43.254.18", 0)])
    (port,) = peers.start()
    sock = socket.create_connection(("127.43.254.18", port), timeout=5)
    try:
        sock.sendall(REQUEST)
        time.sleep(0.1)
        started = time.monotonic()
        peers.stop()
        assert time.monotonic() - started < 2
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
    finally:
        sock.close()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        HostilePeers([("friendly", "127.0.0.1", 0)])
