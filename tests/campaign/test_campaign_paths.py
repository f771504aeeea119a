"""Where the database is, and what is said about it: a directory that does not exist, relative
and absolute sqlite:/// URLs, a URL with a host where SQLite has none, and passwords, which are
never stored in a scan's command line nor printed in a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pacswatch.store.engine import mask_passwords, masked_command

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]


def run(args, cwd=None, env=None):
    return subprocess.run(PACSWATCH + args, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("text,expected", [
    ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ("--database=postgresql://u:s%40cret@h:5432/db", "--database=postgresql://u:***@h:5432/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),          # a raw "@" in the password
    ("https://u:hunter2@example.org/x", "https://u:***@example.org/x"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),                   # no password: as it was
    ("host=h password=secret dbname=x", "host=h password=*** dbname=x"),
    ("postgresql://h/db?user=u&password=secret", "postgresql://h/db?user=u&password=***"),
    ("127.0.0.1:104", "127.0.0.1:104"),
])
def test_mask_passwords(text, expected):
    assert mask_passwords(text) == expected


def test_masked_command_masks_each_argument():
    argv = ["pacswatch", "scan", "127.0.0.1", "--database", "postgresql://u:secret@h/db"]
    assert masked_command(argv) == "pacswatch scan 127.0.0.1 --database postgresql://u:***@h/db"


def test_a_scan_stores_and_shows_its_command_without_the_password(postgres):
    url = postgres.create_database(f"t_mask_{os.getpid()}")
    with_password = url.replace("://postgres@", "://postgres:s3cret-pw@", 1)
    assert "s3cret-pw" in with_password  # trust authentication: the password is ignored, but given
    # (A --contact-url with a password is refused before anything runs: test_cli.py.)
    result = run(["scan", "127.0.0.1:9", "--no-progress", "--no-attribute", "--database", with_password])
    assert result.returncode == 0, result.stderr
    shown = run(["scans", "--format", "json", "--database", with_password])
    assert shown.returncode == 0, shown.stderr
    (scan,) = json.loads(shown.stdout)
    assert "://postgres:***@127.0.0.1" in scan["command"]
    assert "s3cret-pw" not in shown.stdout
    assert "s3cret-pw" not in result.stderr + shown.stderr


def test_a_password_in_the_environment_url_is_not_printed(tmp_path):
    env = dict(os.environ, PACSWATCH_DATABASE_URL="postgresql://u:s3cret-pw@127.0.0.1:1/db")
    result = run(["scans"], env=env)
    assert result.returncode == 1 and "cannot open the database" in result.stderr
    assert "u:***@127.0.0.1" in result.stderr and "s3cret-pw" not in result.stderr
    result = run(["scans", "--database", "sqlite://u:s3cret-pw@tmp/x.db"])
    assert result.returncode == 1 and "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_a_database_in_a_directory_that_does_not_exist_is_an_error_unless_create_dirs(tmp_path):
    path = tmp_path / "missing" / "deeper" / "x.db"
    result = run(["stats", "--database", str(path)])
    assert result.returncode == 1, result.stderr
    assert f"{path.parent} does not exist" in result.stderr and "--create-dirs" in result.stderr
    assert not (tmp_path / "missing").exists()
    result = run(["stats", "--database", str(path), "--create-dirs"])
    assert result.returncode == 0, result.stderr
    assert path.is_file()


def test_a_relative_sqlite_url_says_which_path_it_is_and_how_to_write_the_absolute_one(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # sqlite:///<tmp_path without its leading slash>/x.db is relative to `work`, where it does not exist.
    written = str(tmp_path / "x.db").lstrip("/")
    result = run(["stats", "--database", f"sqlite:///{written}"], cwd=work)
    assert result.returncode == 1
    assert "relative to the current directory" in result.stderr
    assert f"sqlite:////{written}" in result.stderr and "four slashes" in result.stderr
    assert not (tmp_path / "x.db").exists() and list(work.iterdir()) == []

    # The absolute file exists, the relative one would be new: refused, with both named.
    assert run(["stats", "--database", str(tmp_path / "x.db")]).returncode == 0
    (work / written).parent.mkdir(parents=True)
    result = run(["stats", "--database", f"sqlite:///{written}"], cwd=work)
    assert result.returncode == 1, result.stderr
    assert f"sqlite:////{written}" in result.stderr and str(tmp_path / "x.db") in result.stderr
    assert not (work / written).exists()
    # Written with four slashes, it is the file that exists.
    assert run(["stats", "--database", f"sqlite:////{written}"], cwd=work).returncode == 0


def test_an_sqlite_url_with_a_host_is_one_clear_error(tmp_path):
    result = run(["scan", "127.0.0.1:9", "--no-progress", "--database", "sqlite://tmp/x.db"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert "host part ('tmp')" in result.stderr and "sqlite:////absolute/path.db" in result.stderr
    assert list(tmp_path.iterdir()) == []
