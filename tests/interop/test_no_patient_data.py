"""docs/design.md, first rule: no patient data is kept.

Plant fake patients in real servers, scan them all with the real command line, then search
everything pacswatch wrote (stdout, stderr, the output file, and every file under the HOME,
TMPDIR and working directory it was given, all one fresh directory) for every LEAK_MARKER. The
same scan must also have counted those patients, so this test fails if the scanner saw nothing.

The servers' own files (config, storage, logs) are elsewhere (`interop_dir`): they hold the
patients by design.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fakedata
from loopback import guard_dir

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _pacswatch_command() -> list[str]:
    script = Path(sys.executable).with_name("pacswatch")
    if script.exists():
        return [str(script)]
    # Same entry point as the console script, for environments without bin/pacswatch.
    return [sys.executable, "-c", "import sys; from pacswatch.cli import main; sys.exit(main())"]


def _blobs(path: Path) -> list[tuple[str, bytes]]:
    """The file's bytes, plus the contents of compressed containers (gzip, zip)."""
    data = path.read_bytes()
    out = [(str(path), data)]
    if data[:2] == b"\x1f\x8b":
        try:
            out.append((f"{path}!gunzip", gzip.decompress(data)))
        except OSError:
            pass
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                out += [(f"{path}!{name}", zf.read(name)) for name in zf.namelist()]
        except zipfile.BadZipFile:
            pass
    return out


def search_tree(paths: list[Path]) -> dict[str, list[str]]:
    """Every LEAK_MARKER found in these files or anywhere under these directories."""
    found: dict[str, list[str]] = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            for name, blob in _blobs(path):
                hits = fakedata.find_markers(blob)
                if hits:
                    found[name] = hits
    return found


def test_the_search_finds_planted_patients(fake_files):
    # The search itself must be able to fail: the fake files are full of markers.
    found = search_tree([fake_files[0].parent])
    assert len(found) == len(fake_files)
    assert all("Zzyzx^Quentavious" in hits or "Vrillendorf^Ottoline" in hits or "Quaxmire^Belphegora" in hits
               for hits in found.values())


def test_scan_keeps_no_patient_data(tmp_path, all_servers, interop_network, assert_loopback):
    servers = all_servers
    run_dir = tmp_path / "run"
    home = run_dir / "home"  # HOME, TMPDIR, XDG dirs and cwd of pacswatch: everything it writes
    captured = run_dir / "captured"
    for d in (home / "tmp", captured):
        d.mkdir(parents=True)
    out_file = home / "out.jsonl"
    proof = run_dir / "guard-proof.txt"

    dicom_ports = {s.port for s in servers.values()}
    web_ports = {s.http_port for s in servers.values() if hasattr(s, "http_port")}
    ports = ",".join(str(p) for p in sorted(dicom_ports | web_ports))
    network_ip = interop_network.split("/")[0]
    assert_loopback(network_ip, *(s.ip for s in servers.values()))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACSWATCH", "XDG_", "LD_PRELOAD"))}
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        PYTHONDONTWRITEBYTECODE="1",
        # sitecustomize from here refuses any non-loopback connect/bind in pacswatch's process.
        PYTHONPATH=os.pathsep.join([str(guard_dir(run_dir / "guard")), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PACSWATCH_GUARD_PROOF=str(proof),
    )
    command = [
        *_pacswatch_command(),
        "scan",
        interop_network,
        "--ports", ports,
        "--web-ports", ",".join(str(p) for p in sorted(web_ports)),
        "--output", str(out_file),
        "--format", "jsonl",
        "--rate", "1000",
        "--concurrency", "64",
        "--seed", "7731",
        "--no-progress",
    ]
    with open(captured / "stdout", "wb") as stdout, open(captured / "stderr", "wb") as stderr:
        result = subprocess.run(command, cwd=home, env=env, stdout=stdout, stderr=stderr, timeout=300)
    stderr_text = (captured / "stderr").read_text(errors="replace")
    assert result.returncode == 0, f"pacswatch scan failed ({result.returncode}):\n{stderr_text[-3000:]}"
    assert proof.exists(), "the loopback guard did not load in the pacswatch process"

    # 1. Nothing pacswatch wrote holds a marker: the searched tree includes the scan's database.
    databases = list(home.rglob("*.db"))
    assert databases and all(db.stat().st_size > 0 for db in databases), "the scan stored nothing under HOME"
    leaks = search_tree([captured / "stdout", captured / "stderr", home])
    assert not leaks, f"patient data found in pacswatch's output: {leaks}"

    # 2. The scan did see the patients (so step 1 means something).
    records = [json.loads(line) for line in out_file.read_text().splitlines() if line.strip()]
    by_endpoint = {(r["ip"], r["port"]): r for r in records}

    def dicom_of(server) -> dict:
        record = by_endpoint.get((server.ip, server.port))
        assert record is not None, f"no record for {server!r}"
        assert record.get("dicom"), record
        return record

    for name in ("orthanc_open", "orthanc_locked", "pynetdicom_open"):
        record = dicom_of(servers[name])
        find = record["dicom"]["find"]
        assert (find["studies"], find["patients"]) == (fakedata.N_STUDIES, fakedata.N_PATIENTS), (name, record)
        assert record["severity"] == "critical", (name, record)
    assert dicom_of(servers["orthanc_locked"])["dicom"]["called_ae_found"] == "ORTHANC"
