"""The PDU engine's memo against real pynetdicom SCPs: an empty archive fills the tree, an archive
with fake patients answers alike up to the counting C-FIND and then differently, so its
connection leaves the tree there: the steps are replayed along the PDUs so far and carry on live.
Records match the asyncio path's, and no PDU with a data set (a match) is ever kept in the tree."""

from __future__ import annotations

import asyncio

import fakedata
import pytest
from pynetdicom_server import PynetdicomServer

from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom import DicomProbe
from pacswatch.probes.dicom_engine import rememberable

pytestmark = pytest.mark.interop

OPTIONS = ProbeOptions(timeouts=Timeouts.scaled(2.0), ae_guess=())


@pytest.fixture(scope="module")
def empty_and_full(interop_pool, interop_dir, fake_datasets):
    empty = PynetdicomServer(interop_pool.next(), workdir=interop_dir / "pynetdicom-empty").start()
    full = PynetdicomServer(interop_pool.next(), datasets=fake_datasets, workdir=interop_dir / "pynetdicom-full").start()
    try:
        yield empty, full
    finally:
        empty.stop()
        full.stop()


def probe_in_turn(probe: DicomProbe, servers, *, pdu_engine: bool) -> list:
    ctx = ProbeContext(OPTIONS, pdu_engine=pdu_engine)

    async def main():
        records = [await probe.run(ctx, Endpoint(s.ip, s.port)) for s in servers]
        ctx.close()
        return records

    return asyncio.run(main())


def nodes(tree):
    pending = [tree.root]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(node.children.values())


def test_a_peer_that_leaves_the_tree_midway_is_replayed_and_finished_live(empty_and_full, fake_files, monkeypatch):
    empty, full = empty_and_full
    replays = []
    import pacswatch.probes.dicom_engine as dicom_engine

    real_go_live = dicom_engine.EngineAttempt._go_live

    def go_live(self):
        replays.append(len(self.node.path()) if self.node is not None else None)
        return real_go_live(self)

    monkeypatch.setattr(dicom_engine.EngineAttempt, "_go_live", go_live)
    probe = DicomProbe()
    on_engine = probe_in_turn(probe, [empty, full, full], pdu_engine=True)
    # The empty archive: live from the start (empty tree). The full one: the same AC, echo and
    # permission answers, then a pending response instead of the final one: replayed along the
    # three PDUs before it. pynetdicom sends a pending response's command and its identifier
    # in two PDUs: the command is kept in the tree, the identifier never, so the second full
    # archive leaves the tree one PDU later, at the identifier.
    assert replays == [None, 3, 4]
    on_asyncio = probe_in_turn(probe, [empty, full, full], pdu_engine=False)  # same called AE
    volatile = {"scanned_at", "elapsed_ms"}
    for a, b in zip(on_engine, on_asyncio):
        assert a.model_dump(exclude=volatile) == b.model_dump(exclude=volatile)
    assert on_engine[0].dicom.find.studies == 0
    assert on_engine[1].dicom.find.studies > 0 and on_engine[1].severity == "critical"
    (tree,) = probe._trees.values()
    keys = [key for node in nodes(tree) for key in node.children]
    assert len(keys) == tree.size - 1
    assert all(rememberable(key) for key in keys)
    assert not any(fakedata.find_markers(key) for key in keys)  # no fake name, ID, date, UID
    assert any(fakedata.find_markers(f.read_bytes()) for f in fake_files)  # (the check can fail)
