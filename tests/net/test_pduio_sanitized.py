"""The PDU engine (net/_pduio.c) reads what hostile peers send, in C: it is built here again
with AddressSanitizer and UndefinedBehaviorSanitizer, and the tests that drive it (framing,
fuzzed framing, the hostile lab peers, the memo's replays, real pynetdicom archives) run against
that build in a child pytest. Any out-of-bounds access, use after free or undefined behaviour
aborts the child, and this test fails with the sanitizer's report."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src/pacswatch/net/_pduio.c"
# The tests that make the engine read peers' bytes; not the 10,000-endpoint memory test (the
# sanitizer's own bookkeeping is what its RSS check would see).
DRIVING = [
    "tests/net/test_pduio.py",
    "tests/probes/test_dicom_engine.py",
    "tests/probes/test_dicom_conversation.py",
    "tests/probes/test_dicom_probe_lab.py",
    "tests/interop/test_engine_replay.py",
]

# Loaded into the child pytest with -p: the sanitized build takes the place of the installed one
# before anything imports it, and the child says which file it really used.
PLUGIN = textwrap.dedent('''
    import importlib.util, os, sys

    _path = os.environ["PACSWATCH_SANITIZED_ENGINE"]
    _spec = importlib.util.spec_from_file_location("pacswatch.net._pduio", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    sys.modules["pacswatch.net._pduio"] = _module

    def pytest_sessionfinish(session, exitstatus):
        from pacswatch.net import pduio
        with open(os.environ["PACSWATCH_SANITIZED_PROOF"], "w") as proof:
            proof.write(pduio._pduio.__file__)
''')


def runtime(name: str) -> str:
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.isabs(path) and os.path.exists(path), f"gcc has no {name} here (Debian: libasan8, libubsan1)"
    return path


def test_the_engine_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    built = tmp_path / "_pduio_sanitized.so"
    compiled = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers", f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(built)],
        capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    (tmp_path / "sanitized_engine.py").write_text(PLUGIN)
    proof = tmp_path / "proof"
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=f"{runtime('libasan.so')}:{runtime('libubsan.so')}",
        # CPython frees little at exit by design: leaks are not what this looks for. A small
        # quarantine keeps memory modest; abort on the first report, with a stack.
        # Reports go to files: pytest's capture of the child's stderr dies with the abort.
        ASAN_OPTIONS=f"detect_leaks=0:abort_on_error=1:quarantine_size_mb=16:log_path={tmp_path / 'asan'}",
        UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:log_path={tmp_path / 'ubsan'}",
        PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PACSWATCH_SANITIZED_ENGINE=str(built),
        PACSWATCH_SANITIZED_PROOF=str(proof),
    )
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sanitized_engine", "-p", "no:cacheprovider", *DRIVING],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    reports = sorted(tmp_path.glob("asan.*")) + sorted(tmp_path.glob("ubsan.*"))
    # The sanitizer's report (what was accessed, where, and where it was allocated) first.
    assert not reports, "\n".join(path.read_text(errors="replace")[:6000] for path in reports)
    report = child.stdout[-4000:] + child.stderr[-4000:]
    assert child.returncode == 0, report
    assert proof.read_text() == str(built), "the child did not run the sanitized engine"
    assert " passed" in child.stdout and " failed" not in child.stdout, report
