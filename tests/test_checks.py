"""The checks scripts/test runs before pytest (issue 16, item 4), checked for what they promise.

mypy is strict on the protocol core, the transport, the assessment and target parsing, and has
its defaults elsewhere: a config that made every module strict, or none, would pass a plain
`mypy` run as long as the code happened to be clean, so these tests hand mypy one untyped
function in each kind of module (through --shadow-file: nothing in the tree is touched) and
look at what it says.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNTYPED = "\n\ndef _untyped(value):\n    return value\n"


def mypy_with_an_untyped_function(module: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """mypy (pyproject's settings) on `module`, with an untyped function added at its end."""
    source = ROOT / "src" / module
    shadow = tmp_path / source.name
    shadow.write_text(source.read_text() + UNTYPED)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--shadow-file", str(source), str(shadow), str(source)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_is_strict_on_the_strict_packages(tmp_path):
    for module in ("pacswatch/targets/ports.py", "pacswatch/dicom/buffer.py", "pacswatch/net/limits.py",
                   "pacswatch/assess.py"):
        result = mypy_with_an_untyped_function(module, tmp_path)
        assert result.returncode == 1, (module, result.stdout, result.stderr)
        assert "Function is missing a type annotation  [no-untyped-def]" in result.stdout, (module, result.stdout)


def test_mypy_keeps_its_defaults_elsewhere(tmp_path):
    # An untyped function is fine outside the strict packages (`strict = true` in an override
    # would have made it an error everywhere).
    for module in ("pacswatch/status.py", "pacswatch/findings/schedule.py"):
        result = mypy_with_an_untyped_function(module, tmp_path)
        assert result.returncode == 0, (module, result.stdout, result.stderr)
        assert "Success: no issues found in 1 source file" in result.stdout


def test_scripts_test_lints_and_type_checks_before_pytest():
    lines = [line.strip() for line in (ROOT / "scripts" / "test").read_text().splitlines()]
    ruff = lines.index(".venv/bin/python -m ruff check src tests bench")
    mypy = lines.index(".venv/bin/python -m mypy")
    pytest = lines.index('exec .venv/bin/python -m pytest "$@"')
    assert ruff < pytest and mypy < pytest
    assert "set -euo pipefail" in lines  # a failed check ends the script
