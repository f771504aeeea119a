"""`pacswatch users ...` and `pacswatch serve`'s refusals, through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from web_support import free_port

from pacswatch.cli import main
from pacswatch.cli.web import bind_refusal
from pacswatch.store.engine import open_database
from pacswatch.web import accounts


def test_users_add_list_passwd_remove(tmp_path, capsys):
    db = str(tmp_path / "u.db")
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    assert main(["users", "add", "ana", "--role", "analyst", "--password-file", str(secret), "--database", db]) == 0
    assert main(["users", "add", "ana", "--role", "viewer", "--password-file", str(secret), "--database", db]) == 2
    assert "already a user 'ana'" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("short\n")
    assert main(["users", "add", "bob", "--role", "viewer", "--password-file", str(short), "--database", db]) == 2
    assert main(["users", "list", "--database", db]) == 0
    listed = capsys.readouterr().out
    assert "ana\tanalyst" in listed and "bob" not in listed
    engine = open_database(db)
    try:
        assert accounts.authenticate(engine, "ana", "a long enough password") is not None
        new = tmp_path / "new"
        new.write_text("another long password\n")
        assert main(["users", "passwd", "ana", "--password-file", str(new), "--database", db]) == 0
        assert accounts.authenticate(engine, "ana", "a long enough password") is None
        assert accounts.authenticate(engine, "ana", "another long password") is not None
        assert main(["users", "remove", "ana", "--database", db]) == 0
        assert main(["users", "remove", "ana", "--database", db]) == 1
        assert accounts.list_users(engine) == []
    finally:
        engine.dispose()


def test_users_add_without_a_terminal_or_file_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert main(["users", "add", "ana", "--role", "admin", "--database", str(tmp_path / "u.db")]) == 2
    assert "--password-file" in capsys.readouterr().err


def test_password_hashes_are_argon2_and_no_password_is_stored(tmp_path):
    engine = open_database(str(tmp_path / "u.db"))
    try:
        accounts.add_user(engine, "ana", "admin", "a long enough password", accounts_now())
    finally:
        engine.dispose()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("u.db*"))  # the file and its WAL, if left
    assert b"a long enough password" not in data and b"$argon2id$" in data


def accounts_now():
    from pacswatch.web.settings import utc_now

    return utc_now()


@pytest.mark.parametrize(("host", "tls", "public", "refused"), [
    ("127.0.0.1", False, False, False),
    ("::1", False, False, False),
    ("127.65.0.9", False, False, False),
    ("0.0.0.0", False, False, True),
    ("192.0.2.10", False, False, True),
    ("0.0.0.0", True, False, False),
    ("0.0.0.0", False, True, False),
    ("localhost", False, False, True),  # a name is never resolved
])
def test_bind_refusal(host, tls, public, refused):
    assert (bind_refusal(host, tls=tls, insecure_public=public) is not None) == refused


def test_serve_refuses_a_public_bind_without_tls(tmp_path, capsys):
    assert main(["serve", "--host", "0.0.0.0", "--database", str(tmp_path / "s.db")]) == 2
    assert "--tls-cert" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened


def test_serve_answers_on_loopback(tmp_path):
    port = free_port("127.65.0.1")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    command = [sys.executable, "-c", "import sys; from pacswatch.cli import main; sys.exit(main())", "serve",
               "--host", "127.65.0.1", "--port", str(port), "--database", str(tmp_path / "s.db")]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.65.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail(f"serve ended: {process.communicate()[1]}")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer.status_code == 200 and "Log in" in answer.text
        assert (tmp_path / "data" / "pacswatch" / "web-secret").stat().st_mode & 0o077 == 0
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_users_token_prints_a_working_api_token(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from pacswatch.web.app import create_app
    from pacswatch.web.settings import WebSettings

    db = str(tmp_path / "t.db")
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    assert main(["users", "add", "ana", "--role", "viewer", "--password-file", str(secret), "--database", db]) == 0
    capsys.readouterr()
    assert main(["users", "token", "nobody", "--database", db]) == 2
    assert main(["users", "token", "ana", "--label", "ci", "--database", db]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("pw_")
    app = create_app(WebSettings(database_url=db, secret=b"x" * 32))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/scans", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/api/v1/scans", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    app.state.engine.dispose()
