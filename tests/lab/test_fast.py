"""The fast responder: full associations on many endpoints, in a thread and in worker processes."""

import socket
import subprocess
import sys

import psutil
import pytest

from pacswatch.dicom.pdu import AAssociateAC, AReleaseRP, AReleaseRQ
from pacswatch.lab.fast import FastResponder, loopback_addresses

from lab_client import RawClient, rq


def full_association(ip: str, port: int) -> None:
    with RawClient(ip, port) as client:
        client.send(rq())
        ac = client.recv_pdu()
        assert isinstance(ac, AAssociateAC)
        assert [c.result for c in ac.contexts] == [0, 0, 3]  # echo, FIND; the 2.25 control refused
        echo = client.echo()
        assert (echo.command_field, echo.status) == (0x8030, 0x0000)
        find = client.find()
        assert (find.command_field, find.status) == (0x8020, 0x0000)  # no pending: zero results
        client.send(AReleaseRQ())
        assert isinstance(client.recv_pdu(), AReleaseRP)


def test_loopback_addresses():
    addresses = loopback_addresses(300, "127.60.0.250")
    assert addresses[:5] == ["127.60.0.250", "127.60.0.251", "127.60.0.252", "127.60.0.253", "127.60.0.254"]
    assert addresses[5] == "127.60.1.1"
    assert len(set(addresses)) == 300
    with pytest.raises(ValueError):
        loopback_addresses(1, "10.0.0.1")
    with pytest.raises(ValueError):
        loopback_addresses(300, "127.255.255.200")  # would run out of 127/8


def test_refuses_non_loopback():
    with pytest.raises(ValueError):
        FastResponder(["192.0.2.1"], [11112])


def test_thread_mode_many_endpoints(resources):
    addresses = loopback_addresses(100, "127.61.0.0")
    with FastResponder(addresses, [0, 0], workers=0) as responder:
        assert len(responder.endpoints) == 200
        assert len(set(responder.endpoints)) == 200
        for ip, port in responder.endpoints:
            full_association(ip, port)
    threads, fds = resources.leaked()
    assert not threads and fds <= 0


def test_worker_processes(resources):
    addresses = loopback_addresses(300, "127.62.0.0")
    # Other tests' servers (session fixtures) may be children of this process too.
    before = {c.pid for c in psutil.Process().children()}
    responder = FastResponder(addresses, [0], workers=2)
    responder.start()
    try:
        children = [c for c in psutil.Process().children() if c.pid not in before]
        assert len(children) == 2
        assert [ip for ip, _ in responder.endpoints] == addresses  # order kept across workers
        for ip, port in responder.endpoints[::7]:
            full_association(ip, port)
    finally:
        responder.stop()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    threads, fds = resources.leaked()
    assert not threads and fds <= 0
    with pytest.raises(OSError):  # the listening sockets are gone
        socket.create_connection(responder.endpoints[0], timeout=1)


def test_bind_conflict_is_reported():
    with FastResponder(["127.63.0.1"], [0]) as first:
        (ip, port), = first.endpoints
        with pytest.raises(OSError, match="in use"):
            FastResponder([ip], [port]).start()
        with pytest.raises(OSError, match="in use"):
            FastResponder([ip], [port], workers=1).start()


def test_worker_exits_when_its_parent_dies():
    code = (
        "from pacswatch.lab.fast import FastResponder\n"
        "r = FastResponder(['127.63.0.2'], [0], workers=1); r.start()\n"
        "import psutil, os; print(psutil.Process().children()[0].pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    try:
        psutil.Process(pid).wait(10)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_ten_thousand_endpoints():
    """The benchmark's scale: 10,000 listening endpoints over two workers, each one answering."""
    import asyncio

    from pacswatch.dicom.pdu import PduFramer, encode_pdu
    from pacswatch.dicom.dimse import c_echo_rq, encode_command, fragment_message

    request = encode_pdu(rq())
    echo = b"".join(encode_pdu(p) for p in fragment_message(1, encode_command(c_echo_rq(1)), None, 16384))

    async def one(ip, port, gate):
        async with gate:
            reader, writer = await asyncio.open_connection(ip, port)
            framer, got = PduFramer(1 << 20), []
            try:
                for data in (request, echo, encode_pdu(AReleaseRQ())):
                    writer.write(data)
                    while not got:
                        got = framer.feed(await reader.read(65536))
                    got.pop(0)
            finally:
                writer.close()

    async def scan(endpoints):
        gate = asyncio.Semaphore(256)
        await asyncio.gather(*(one(ip, port, gate) for ip, port in endpoints))

    with FastResponder(loopback_addresses(10_000, "127.64.0.0"), [11112], workers=2) as responder:
        asyncio.run(asyncio.wait_for(scan(responder.endpoints), 120))
