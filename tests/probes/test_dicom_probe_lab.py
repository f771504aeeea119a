"""The DICOM probe against every kind of the lab: each endpoint gets the facts the lab knows, and
each hostile peer costs one status within its deadline (issue 2, "hostile peers from the lab")."""

from __future__ import annotations

import asyncio
import ipaddress
import time
import tracemalloc

import pytest

from pacswatch.lab.hostile import HOSTILE_KINDS
from pacswatch.lab.manifest import check_record
from pacswatch.lab.runner import Lab
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.scan.runner import probe_endpoint

TIMEOUTS = Timeouts.scaled(1.0)


@pytest.fixture(scope="module")
def lab():
    with Lab("127.45.3.0", port=0, drip_interval=0.5) as running:
        for endpoint in running.manifest:
            assert ipaddress.ip_address(endpoint.ip).is_loopback
        yield running


def probe(endpoint, **options) -> tuple:
    async def run():
        ctx = ProbeContext(ProbeOptions(timeouts=TIMEOUTS, tls_ports=frozenset({endpoint.port})
                                        if endpoint.transport == "tls" else frozenset(), **options))
        return await probe_endpoint(DicomProbe(), ctx, Endpoint(endpoint.ip, endpoint.port))

    started = time.monotonic()
    record = asyncio.run(run())
    return record, time.monotonic() - started


def test_every_lab_endpoint_gets_the_facts_the_lab_knows(lab):
    problems = {}
    for endpoint in lab.manifest:
        record, _ = probe(endpoint)
        wrong = check_record(endpoint, record)
        if wrong:
            problems[endpoint.name] = wrong
    assert problems == {}


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_each_hostile_peer_costs_one_status_within_its_deadline(lab, kind):
    endpoint = lab.endpoint(kind)
    record, elapsed = probe(endpoint)
    assert check_record(endpoint, record) == [], record.detail
    assert record.status != "error", record.detail  # a hostile peer is never our bug
    # The endpoint deadline bounds everything, TLS fallback included, with a little slack for
    # connect and teardown.
    assert elapsed < TIMEOUTS.endpoint + 1.0, (kind, elapsed, record.detail)


def test_a_four_gigabyte_length_claim_allocates_nothing_like_it(lab):
    endpoint = lab.endpoint("huge-length")
    tracemalloc.start()
    try:
        record, _ = probe(endpoint)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record.status == "protocol-error" and "length" in (record.detail or "")
    # The framer refuses the header before buffering any body: the whole probe, event loop and
    # record included, stays far below even one capped PDU (1 MiB).
    assert peak < 1 << 20, peak
