"""The DICOM probe on the PDU engine, and its memo of answers (probes/dicom_engine.py): alike
peers are answered from the tree without running the steps, the records are exactly those of
the asyncio path, a peer that leaves the tree is replayed and carries on live, and a tree that
disagrees with the steps is reported as our bug."""

from __future__ import annotations

import asyncio
import time

import pytest

from pacswatch.dicom.association import encode_message
from pacswatch.dicom.dimse import NO_DATA_SET, Command, CommandField, decode_command
from pacswatch.dicom.pdu import PDV, PDataTF, PduFramer, encode_pdu
from pacswatch.lab.acceptor import Acceptor
from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom import DicomProbe
from pacswatch.probes.dicom_engine import UNCHANGED, ConversationTree, rememberable

TIMEOUTS = Timeouts.scaled(1.0)
OPTIONS = ProbeOptions(timeouts=TIMEOUTS)  # one object: a probe keeps one tree per options object
VOLATILE = {"scanned_at", "elapsed_ms"}


@pytest.fixture(scope="module")
def responders():
    with FastResponder(loopback_addresses(12, "127.46.9.0"), ports=[0], workers=0) as running:
        yield running.endpoints


def probe_all(endpoints, *, pdu_engine: bool, probe: DicomProbe | None = None, concurrency: int = 1):
    probe = probe or DicomProbe()
    ctx = ProbeContext(OPTIONS, pdu_engine=pdu_engine)

    async def main():
        queue = list(endpoints)
        records = []

        async def worker():
            while queue:
                ip, port = queue.pop(0)
                records.append(await probe.run(ctx, Endpoint(ip, port)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ctx.close()
        return records

    return asyncio.run(main()), probe


def count_conversations(monkeypatch) -> list:
    runs = []
    real = DicomProbe._conversation

    def counted(self, session, opts, attempt):
        runs.append(attempt.called_ae)
        return real(self, session, opts, attempt)

    monkeypatch.setattr(DicomProbe, "_conversation", counted)
    return runs


def comparable(record) -> dict:
    return record.model_dump(exclude=VOLATILE)


def test_alike_peers_are_answered_from_the_tree_with_the_records_of_the_asyncio_path(responders, monkeypatch):
    runs = count_conversations(monkeypatch)
    probe = DicomProbe()
    on_engine, _ = probe_all(responders, pdu_engine=True, probe=probe)
    assert len(runs) == 1  # the first endpoint ran the steps; the other eleven came from the tree
    runs.clear()
    on_asyncio, _ = probe_all(responders, pdu_engine=False, probe=probe)
    assert len(runs) == len(responders)
    assert [comparable(r) for r in on_engine] == [comparable(r) for r in on_asyncio]
    assert {r.status for r in on_engine} == {"success"} and all(r.dicom.find.allowed for r in on_engine)


def test_concurrent_first_connections_build_one_tree(responders, monkeypatch):
    runs = count_conversations(monkeypatch)
    records, probe = probe_all(responders, pdu_engine=True, concurrency=len(responders))
    assert {r.status for r in records} == {"success"}
    (tree,) = probe._trees.values()
    # Every connection went live before the tree had a root; they all agreed on one tree.
    assert 1 <= len(runs) <= len(responders)
    # One path: the request, then after each answer the echo, the check, two counts, the
    # release, and the end.
    path, node = [], tree.root
    while node.children:
        assert len(node.children) == 1
        path.append(node)
        node = next(iter(node.children.values()))
    assert node.done and node.result is not None
    assert tree.size == len(path) + 1 == 7


def test_each_hit_gets_its_own_find_facts(responders):
    records, _ = probe_all(responders[:3], pdu_engine=True)
    records[0].dicom.find.studies = 999  # a record's facts are its own, not the tree's
    assert records[1].dicom.find.studies == 0 and records[2].dicom.find.studies == 0


def test_a_tree_that_disagrees_with_the_steps_is_reported_as_our_bug(responders):
    probe = DicomProbe()
    first, _ = probe_all(responders[:1], pdu_engine=True, probe=probe)
    assert first[0].status == "success"
    (tree,) = probe._trees.values()
    # Corrupt what the tree says the echo step sent, and drop the node after it: the next peer
    # leaves the tree there, the replay must notice that the steps send something else.
    echo = next(iter(tree.root.children.values()))
    echo.out = b"\x04\x00\x00\x00\x00\x00"
    echo.children.clear()
    second, _ = probe_all(responders[1:2], pdu_engine=True, probe=probe)
    assert second[0].status == "error" and "memo disagrees" in (second[0].detail or ""), second[0]


def test_pdus_carrying_a_data_set_are_never_remembered():
    command = encode_pdu(PDataTF((PDV(1, True, True, b"\x00" * 10),)))
    data_set = encode_pdu(PDataTF((PDV(1, False, True, b"PATIENT^NAME"),)))
    both = encode_pdu(PDataTF((PDV(1, True, True, b"\x00" * 10), PDV(1, False, True, b"X"))))
    assert rememberable(command)
    assert not rememberable(data_set)
    assert not rememberable(both)
    assert rememberable(b"\x02\x00\x00\x00\x00\x04abcd")  # an A-ASSOCIATE-AC-like PDU
    assert not rememberable(b"\x02\x00" + (5000).to_bytes(4, "big") + b"\x00" * 5000)  # too long


def test_the_tree_is_bounded(monkeypatch):
    import pacswatch.probes.dicom_engine as dicom_engine

    monkeypatch.setattr(dicom_engine, "MAX_NODES", 3)
    tree = ConversationTree()
    root = tree.add(None, None, b"rq", 1.0, False)
    a = tree.add(root, b"a", b"x", 1.0, False)
    assert tree.add(root, b"a", b"x", 1.0, False) is a  # known: no new node
    assert tree.add(a, b"b", b"y", None, True) is not None
    assert tree.add(a, b"c", b"z", None, True) is None  # full
    with pytest.raises(RuntimeError, match="memo disagrees"):
        tree.add(root, b"a", b"other", 1.0, False)


def test_the_tree_is_bounded_in_bytes_too(monkeypatch):
    import pacswatch.probes.dicom_engine as dicom_engine

    monkeypatch.setattr(dicom_engine, "MAX_BYTES", 10)
    tree = ConversationTree()
    root = tree.add(None, None, b"12345678", 1.0, False)
    assert tree.add(root, b"ab", b"", 1.0, False) is not None  # 10 bytes: the limit
    assert tree.add(root, b"c", b"", 1.0, False) is None


def test_the_memo_can_be_turned_off_for_measurements(responders):
    # PACSWATCH_PDU_MEMO=0 (bench variant "nomemo"): every conversation runs its steps live.
    import json
    import os
    import subprocess
    import sys

    code = (
        "import asyncio, json\n"
        "from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions\n"
        "from pacswatch.probes.dicom import DicomProbe\n"
        "runs = []\n"
        "real = DicomProbe._conversation\n"
        "def counted(self, *a):\n"
        "    runs.append(1)\n"
        "    return real(self, *a)\n"
        "DicomProbe._conversation = counted\n"
        "probe, ctx = DicomProbe(), ProbeContext(ProbeOptions())\n"
        f"endpoints = {responders[:4]!r}\n"
        "async def main():\n"
        "    return [await probe.run(ctx, Endpoint(ip, port)) for ip, port in endpoints]\n"
        "records = asyncio.run(main())\n"
        "print(json.dumps([len(runs), sorted({r.status for r in records})]))\n"
    )
    for memo, expected_runs in (("0", 4), ("1", 1)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PACSWATCH_PDU_MEMO": memo})
        assert json.loads(out.stdout.splitlines()[-1]) == [expected_runs, ["success"]], out.stderr


class StrayThenSilent:
    """Answers the association like the lab, then meets the C-ECHO request with a C-ECHO
    response to another message ID after `delays[n]` seconds (the n-th connection's), and then
    says nothing more. Such a PDU does not end the echo's wait: the probe must keep the deadline
    its echo request set, whether it runs the steps or answers from the tree."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = list(delays)
        self.finished = 0  # connections whose end this side has seen

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        delay = self.delays.pop(0)
        framer, acceptor = PduFramer(1 << 20), Acceptor()
        try:
            while data := await reader.read(65536):
                for pdu in framer.feed(data):
                    if isinstance(pdu, PDataTF):
                        command = decode_command(pdu.pdvs[0].data)
                        if command.command_field == CommandField.C_ECHO_RQ:
                            await asyncio.sleep(delay)
                            stray = Command(CommandField.C_ECHO_RSP,
                                            message_id_being_responded_to=command.message_id + 100,
                                            affected_sop_class_uid=command.affected_sop_class_uid,
                                            data_set_type=NO_DATA_SET, status=0x0000)
                            writer.write(encode_message(pdu.pdvs[0].context_id, stray, None, 16384))
                        continue  # silent from here on
                    out, _ = acceptor.receive(encode_pdu(pdu))
                    writer.write(out)
        except ConnectionError:
            pass
        finally:
            self.finished += 1
            writer.close()


def test_a_pdu_that_leaves_the_deadline_alone_keeps_it_alone_on_a_connection_answered_from_the_tree():
    host = "127.46.10.1"
    dimse = 2.0
    timeouts = Timeouts(connect=2.0, association=5.0, dimse=dimse, release=0.4, endpoint=30.0)
    options = ProbeOptions(timeouts=timeouts, ae_guess=())
    # The first connection runs the steps and gets the stray response early; the second one is
    # answered from the tree and gets it late. Both must give up `dimse` seconds after their
    # echo request, not (as a tree that kept "the time left") late + what was left early.
    peer = StrayThenSilent([0.1, 1.2])
    probe = DicomProbe()

    async def main():
        server = await asyncio.start_server(peer.handle, host, 0)
        port = server.sockets[0].getsockname()[1]
        ctx = ProbeContext(options, pdu_engine=True)
        try:
            out = []
            for _ in range(2):
                started = time.monotonic()
                record = await probe.run(ctx, Endpoint(host, port))
                out.append((record, time.monotonic() - started))
            for _ in range(100):  # let the server see both connections end
                if peer.finished == 2:
                    break
                await asyncio.sleep(0.02)
            return out
        finally:
            ctx.close()
            server.close()

    results = asyncio.run(main())
    for record, elapsed in results:
        assert record.dicom is not None and record.dicom.echo is False, record
        assert "no answer before the deadline" in (record.detail or ""), record
        assert dimse - 0.1 < elapsed < dimse + 0.6, (elapsed, record)
    (tree,) = probe._trees.values()
    echo_node = next(iter(tree.root.children.values()))  # after the A-ASSOCIATE-AC: the echo sent
    (stray_node,) = echo_node.children.values()
    assert stray_node.wait == UNCHANGED and stray_node.out == b""
