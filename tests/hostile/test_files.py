"""Files pacswatch writes, in a folder someone else can write to (issue 11): a symbolic link
planted at the name of the file, or at the temporary name it used to write first, must not be
followed. The link's target is a file of the "victim"; it must be unchanged, and the error must
say what happened."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS / "notify") not in sys.path:
    sys.path.insert(0, str(_TESTS / "notify"))

from pacswatch.notify import cases as C
from pacswatch.notify.exports import write_per_owner
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.render import Renderer, Sender
from pacswatch.notify.smtp import DryRunTransport
from pacswatch.notify.workflow import Settings, build_message
from pacswatch.safefile import UnsafePath, open_stream, write_atomic

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "the victim's file\n"


def _message():
    case = C.Case("local:1", C.NEW, T0, T0, id=3, owner_name="Example Hospital")
    exposure = Exposure("192.0.2.10", 4242, service="dicom", product="Orthanc", severity="critical", first_seen=T0,
                        last_seen=T0)
    return build_message(case, C.INITIAL, [exposure], "it@example.org", settings=Settings(
        sender=Sender(from_addr="notify@example.org")), renderer=Renderer(), now=T0)


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim" / "authorized_keys"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def _unchanged(victim: Path) -> bool:
    return victim.read_text() == SECRET and not victim.is_symlink()


def test_dry_run_outbox_refuses_a_link_at_the_message_name(tmp_path, victim):
    msg = _message()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    planted = outbox / f"case3-initial-{msg.key[:12]}.eml"
    planted.symlink_to(victim)
    with pytest.raises(UnsafePath, match=r"refusing to write .*\.eml: it is a symbolic link"):
        DryRunTransport(outbox).send(msg)
    assert _unchanged(victim) and planted.is_symlink()


def test_dry_run_outbox_ignores_links_at_the_old_predictable_temporary_names(tmp_path, victim):
    msg = _message()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    stem = f"case3-initial-{msg.key[:12]}"
    for name in (f"{stem}.eml.tmp", f"{stem}.txt.tmp", f".{stem}.eml.tmp"):  # what a writer might have used
        (outbox / name).symlink_to(victim)
    DryRunTransport(outbox).send(msg)
    assert _unchanged(victim)
    eml, txt = outbox / f"{stem}.eml", outbox / f"{stem}.txt"
    assert not eml.is_symlink() and eml.read_bytes() == msg.raw
    assert not txt.is_symlink() and txt.read_text().startswith("From: ")
    # Nothing else is left behind: the temporary files were renamed, the planted links untouched.
    assert sorted(p.name for p in outbox.iterdir() if not p.is_symlink()) == sorted([eml.name, txt.name])


def test_write_atomic_and_open_stream_refuse_a_link_and_replace_a_file(tmp_path, victim):
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(UnsafePath, match="it is a symbolic link"):
        write_atomic(link, "x")
    with pytest.raises(UnsafePath, match="it is a symbolic link"):
        open_stream(link)
    with pytest.raises(UnsafePath, match="it is a symbolic link"):
        open_stream(link, append=True)
    assert _unchanged(victim)
    plain = tmp_path / "plain.json"
    plain.write_text("old")
    write_atomic(plain, "new")
    assert plain.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir() if p.name != "victim") == [
        "out.json", "plain.json"]


def test_per_owner_csv_export_refuses_a_link_in_its_folder(tmp_path, victim):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "local_1.csv").symlink_to(victim)
    with pytest.raises(UnsafePath):
        write_per_owner(folder, {"local:1": "ip,port\r\n"})
    assert _unchanged(victim)


def test_export_and_scan_outputs_do_not_follow_a_link(tmp_path, victim):
    database = str(tmp_path / "pacswatch.db")
    link = tmp_path / "events.jsonl"
    link.symlink_to(victim)
    export = subprocess.run([*PACSWATCH, "export", "intelmq", "-o", str(link), "--database", database],
                            capture_output=True, text=True, timeout=60, check=False)
    assert export.returncode == 2, export.stderr
    assert f"pacswatch export: refusing to write {link}: it is a symbolic link" in export.stderr
    # A closed loopback port: the scan would answer fast, but must stop before anything is sent.
    scan = subprocess.run([*PACSWATCH, "scan", "127.0.0.1", "--ports", "9", "--no-progress", "--no-attribute",
                           "-o", str(link), "--database", database], capture_output=True, text=True, timeout=60, check=False)
    assert scan.returncode == 2, scan.stderr
    assert f"refusing to write {link}: it is a symbolic link" in scan.stderr
    assert "Traceback" not in scan.stderr + export.stderr
    assert _unchanged(victim) and link.is_symlink()


def test_a_link_to_something_that_is_not_a_file_is_written_through(tmp_path, victim):
    # /dev/stdout is a link (to /proc/self/fd/1): refusing every link refused `-o /dev/stdout`.
    # What a planted link gains is a file overwritten; a link to a device, a pipe or our own
    # descriptor overwrites nothing, and is followed. A link to a file or to nothing is refused.
    database = str(tmp_path / "pacswatch.db")
    scan = [*PACSWATCH, "scan", "127.0.0.1", "--ports", "9", "--no-progress", "--no-attribute", "--quiet",
            "--database", database]
    piped = subprocess.run([*scan, "-o", "/dev/stdout"], capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0, piped.stderr
    assert '"status":"connection-refused"' in piped.stdout.replace(" ", "")
    # stdout sent to a file by the shell (`>> log`): appended there, at the shell's offset.
    log = tmp_path / "log.jsonl"
    log.write_text("earlier line\n")
    with log.open("a") as appended:
        done = subprocess.run([*scan, "-o", "/dev/stdout"], stdout=appended, stderr=subprocess.PIPE, text=True,
                              timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line" and len(lines) == 2 and "connection-refused" in lines[1]
    to_null = tmp_path / "null.jsonl"
    to_null.symlink_to("/dev/null")
    assert subprocess.run([*scan, "-o", str(to_null)], capture_output=True, timeout=60, check=False).returncode == 0
    with open_stream(to_null) as out:  # and the module itself
        out.write("nothing\n")
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "victim" / "new_file")
    with pytest.raises(UnsafePath, match="symbolic link to a file or to nothing"):
        open_stream(dangling)
    to_file = tmp_path / "to_file.jsonl"
    to_file.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link to a file or to nothing"):
        open_stream(to_file)
    assert not (tmp_path / "victim" / "new_file").exists() and _unchanged(victim)
