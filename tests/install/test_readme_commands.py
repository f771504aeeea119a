"""README's two commands, as a new user runs them: the first one in a clean clone of the
committed tree, in a fresh virtual environment, exactly as README writes it.

This is the check that the install works where pip may not write into the system python (PEP 668)
and that `pacswatch demo` finds every lab endpoint as expected. It downloads the dependencies
from the package registry (pip's cache makes a second run quick)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README must start with a sh block of commands"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_readme_opens_with_install_and_test_commands():
    first, second = readme_commands()[:2]
    assert "venv" in first and first.endswith("pacswatch demo"), first
    assert second == "bash scripts/test"
    # CI runs exactly README's test command.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec bash scripts/test" in ci


@pytest.mark.slow
def test_first_readme_command_works_in_a_clean_clone(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.fail("the README test needs the git checkout it runs from")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PACSWATCH_", "VIRTUAL_ENV", "PYTHON"))}
    # The user's data directory lives under the test's folder: the demo must not need the real one.
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    first = readme_commands()[0]
    done = subprocess.run(["bash", "-c", first], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert re.search(r"(\d+)/\1 endpoints reported as the lab expects", done.stdout), output[-4000:]
    # The demo used a throw-away database: nothing was written to the user's data directory.
    assert not (tmp_path / "data" / "pacswatch").exists()
