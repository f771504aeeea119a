"""The probe's conversation as the connection drives it (probes/dicom/session.py with
net/transport.py `converse`): one timer per association that follows every deadline, earlier
ones included, and a conversation that fails ends its connection at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from pacswatch.dicom.association import encode_message
from pacswatch.dicom.dimse import DATA_SET_PRESENT, Command, CommandField, decode_command
from pacswatch.dicom.identifiers import study_query
from pacswatch.dicom.pdu import AReleaseRQ, PDataTF, PduFramer, encode_pdu
from pacswatch.lab.acceptor import Acceptor
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom import steps
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.scan.runner import probe_endpoint

HOST = "127.45.9.1"
# DIMSE answers may take 5 s; a release, or the rest of a cancelled query, only 0.4 s.
TIMEOUTS = Timeouts(connect=2.0, association=5.0, dimse=5.0, release=0.4, endpoint=30.0)


class Peer:
    """An acceptor that answers like the lab's, except as `mode` says:
    flood-find: every C-FIND gets pending responses without end, and C-CANCEL is ignored;
    ignore-release: A-RELEASE-RQ gets no answer (the connection stays open)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.closed_after: float | None = None  # seconds from accept to our seeing the close

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        framer, acceptor = PduFramer(1 << 20), Acceptor()
        swallowing = False  # the data set of a C-FIND we answer ourselves
        try:
            while data := await reader.read(65536):
                for pdu in framer.feed(data):
                    if self.mode == "ignore-release" and isinstance(pdu, AReleaseRQ):
                        continue
                    if self.mode == "flood-find" and isinstance(pdu, PDataTF):
                        pdv = pdu.pdvs[0]
                        if not pdv.is_command:
                            if swallowing:
                                continue
                        else:
                            command = decode_command(pdv.data)
                            if command.command_field == CommandField.C_CANCEL_RQ:
                                continue  # ignored
                            if command.command_field == CommandField.C_FIND_RQ:
                                swallowing = True
                                writer.write(self._pendings(pdv.context_id, command, 50))
                                continue
                    out, close = acceptor.receive(encode_pdu(pdu))
                    writer.write(out)
                    if close:
                        writer.close()
                        return
        except ConnectionError:
            pass
        finally:
            self.closed_after = time.monotonic() - started
            writer.close()

    @staticmethod
    def _pendings(context_id: int, request: Command, count: int) -> bytes:
        response = Command(CommandField.C_FIND_RSP, message_id_being_responded_to=request.message_id,
                           affected_sop_class_uid=request.affected_sop_class_uid,
                           data_set_type=DATA_SET_PRESENT, status=0xFF00)
        return encode_message(context_id, response, study_query("1.2.3.4"), 16384) * count


def scan(mode: str, probe: DicomProbe | None = None, **options):
    peer = Peer(mode)

    async def main():
        server = await asyncio.start_server(peer.handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            ctx = ProbeContext(ProbeOptions(timeouts=TIMEOUTS, ae_guess=(), **options))
            started = time.monotonic()
            record = await probe_endpoint(probe or DicomProbe(), ctx, Endpoint(HOST, port))
            elapsed = time.monotonic() - started
            for _ in range(100):  # let the server see the end of the connection
                if peer.closed_after is not None:
                    break
                await asyncio.sleep(0.02)
            return record, elapsed
        finally:
            server.close()

    record, elapsed = asyncio.run(main())
    return record, elapsed, peer


def test_a_peer_ignoring_c_cancel_is_cut_off_after_the_short_grace_not_the_dimse_timeout():
    record, elapsed, _ = scan("flood-find", find_limit=3)
    find = record.dicom.find
    # Its pending responses to a random UID prove the query open: the count so far, at least.
    assert find.allowed is True and find.capped is True and find.studies == 3, find
    assert record.severity == "critical" and find.refusal is None
    # The grace deadline (0.4 s) is earlier than the one the timer was set for (5 s): the
    # conversation's one timer must move to it.
    assert elapsed < TIMEOUTS.release + 1.5 < TIMEOUTS.dimse, elapsed
    assert record.dicom.echo is True and record.severity is not None


def test_a_peer_ignoring_the_release_is_aborted_after_the_release_timeout():
    record, elapsed, _ = scan("ignore-release")
    assert record.status == "success" and record.dicom.released is False, record
    assert record.dicom.find.allowed is True and record.dicom.find.studies == 0
    assert elapsed < TIMEOUTS.release + 1.5 < TIMEOUTS.dimse, elapsed


def test_a_failing_conversation_is_reported_and_its_connection_ended_at_once(monkeypatch):
    def broken(session, opts, attempt, queries):
        raise RuntimeError("a bug in the exploration")
        yield  # a generator, like the real one

    monkeypatch.setattr(steps, "explore", broken)
    record, elapsed, peer = scan("normal")
    assert record.status == "error" and "a bug in the exploration" in (record.detail or ""), record
    assert elapsed < 2.0
    assert peer.closed_after is not None and peer.closed_after < 2.0, peer.closed_after


@pytest.mark.parametrize("mode", ["normal", "ignore-release", "flood-find"])
def test_the_probe_leaves_no_connection_open(mode):
    _, _, peer = scan(mode, find_limit=3)
    assert peer.closed_after is not None
