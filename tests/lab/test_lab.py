"""The lab runner: layout, manifest, lifecycle, the `pacswatch lab` loop and the comparison."""

import io
import json
import socket
import threading

import pytest

from pacswatch.lab import DEFAULT_KINDS, SPECS, Lab, check_record, compare, run_lab_forever
from pacswatch.lab.data import planted_strings
from pacswatch.lab.runner import format_table

from labhelpers import fresh_base, record_from_expected


def test_default_layout_is_stable():
    lab = Lab()  # not started: the plan alone
    planned = {spec.kind: ip for spec, ip in lab._planned}
    assert planned["open-archive"] == "127.42.0.10"
    assert planned["ae-restricted"] == "127.42.0.11"
    assert planned["reset"] == "127.42.0.24"
    assert "big-archive" not in planned
    assert lab.port == 11112 and lab.tls_port == 2762
    assert len(set(planned.values())) == len(planned) == len(DEFAULT_KINDS)


@pytest.mark.parametrize("base", ["10.0.0.0", "192.168.1.0", "0.0.0.0", "::1"])
def test_only_loopback(base):
    with pytest.raises(ValueError):
        Lab(base)


def test_unknown_endpoint_name():
    with pytest.raises(ValueError, match="unknown lab endpoint"):
        Lab(names=["open-archive", "nope"])


def test_start_stop_leaves_nothing_behind(resources):
    lab = Lab(fresh_base(), port=0, names=["all"], drip_interval=0.05)
    lab.start()
    directory = lab.certificates.directory
    # Leave a connection open on every endpoint, and a half-done association on some.
    socks = [socket.create_connection(e.address, timeout=5) for e in lab.manifest]
    for sock in socks[:4]:
        sock.sendall(b"\x01\x00\x00\x00")
    lab.stop()
    for sock in socks:
        sock.close()
    threads, fds = resources.leaked()
    assert not threads, threads
    assert fds <= 0
    assert not directory.exists()
    assert lab.manifest == []


def test_every_endpoint_listens_and_the_manifest_is_json(lab):
    names = [e.name for e in lab.manifest]
    assert names == [s.kind for s in SPECS]
    for endpoint in lab.manifest:
        with socket.create_connection(endpoint.address, timeout=5):
            pass
        assert endpoint.ip.startswith("127.")
        assert endpoint.expected["status"]
    data = json.loads(json.dumps(lab.to_json()))
    assert {e["name"] for e in data["endpoints"]} == set(names)
    assert data["endpoints"][0]["expected"]["dicom.find.studies"] == 12


def test_two_labs_side_by_side_on_one_base():
    base = fresh_base()
    with Lab(base, port=0, names=["open-archive", "tarpit", "fast-responder"]) as one, \
            Lab(base, port=0, names=["open-archive", "tarpit", "fast-responder"]) as two:
        assert set(one.targets()).isdisjoint(two.targets())


def test_fixed_port_conflict_is_explained():
    base = fresh_base()
    with Lab(base, port=0, names=["open-archive"]) as first:
        port = first.endpoint("open-archive").port
        with pytest.raises(OSError, match="another lab"):
            Lab(base, port=port, names=["open-archive", "tarpit"]).start()


def test_async_context_manager():
    import asyncio

    async def main():
        async with Lab(fresh_base(), port=0, names=["fast-responder"]) as lab:
            reader, writer = await asyncio.open_connection(*lab.endpoint("fast-responder").address)
            writer.close()
        return lab

    assert asyncio.run(main()).manifest == []


def test_planted_strings_cover_the_archive(lab):
    planted = lab.planted_strings()
    assert "LAB^ALPHA" in planted and "LABPID00001" in planted
    assert set(planted_strings()) <= set(planted)


def test_run_lab_forever_prints_and_stops(tmp_path):
    out, stop = io.StringIO(), threading.Event()
    manifest = tmp_path / "lab.json"
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", run_lab_forever(
        fresh_base(), port=0, names=["open-archive", "tarpit"], manifest_path=str(manifest), out=out, stop=stop)))
    thread.start()
    try:
        for _ in range(100):
            if "Ctrl-C" in out.getvalue():
                break
            threading.Event().wait(0.05)
        text = out.getvalue()
        assert "open-archive" in text and "tarpit" in text and "io-timeout" in text
        assert len(json.loads(manifest.read_text())["endpoints"]) == 2
    finally:
        stop.set()
        thread.join(10)
    assert result["rc"] == 0


def test_compare_and_check_record(lab):
    endpoint = lab.endpoint("open-archive")
    good = {"ip": endpoint.ip, "port": endpoint.port, **record_from_expected(endpoint.expected)}
    assert check_record(endpoint, good) == []
    bad = json.loads(json.dumps(good))
    bad["dicom"]["find"]["studies"] = 11
    assert check_record(endpoint, bad) == ["dicom.find.studies: expected 12, got 11"]
    # Two records for one endpoint: the better one is judged.
    comparisons = compare([endpoint, lab.endpoint("tarpit")], [bad, good])
    assert comparisons[0].ok
    assert not comparisons[1].ok and comparisons[1].problems == ["no record for this endpoint"]


def test_expected_matchers():
    from pacswatch.lab.manifest import LabEndpoint

    endpoint = LabEndpoint("x", "127.0.0.1", 1, "x", {"a": {"one_of": ["p", "q"]}, "b.c": {"at_least": 3}})
    assert check_record(endpoint, {"a": "q", "b": {"c": 3}}) == []
    assert len(check_record(endpoint, {"a": "r", "b": None})) == 2


def test_format_table(lab):
    table = format_table(lab.manifest)
    assert table.splitlines()[0].startswith("ENDPOINT")
    assert "none" in table  # hostile peers expect no severity

