"""Signed, expiring tokens (notify/tokens.py) and the verify link each notice carries when the
configuration names the dashboard ([web] url and secret_file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacswatch.notify import cases as C
from pacswatch.notify import config as configuration
from pacswatch.notify import tokens
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.smtp import readable
from pacswatch.notify.render import Renderer
from pacswatch.notify.workflow import build_message

SECRET = b"k" * 32
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_token_reads_back_until_it_expires():
    token = tokens.make(SECRET, tokens.VERIFY, 42, NOW + timedelta(days=1))
    assert tokens.read(SECRET, tokens.VERIFY, token, NOW).subject == 42
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.read(SECRET, tokens.VERIFY, token, NOW + timedelta(days=1))


def test_a_token_is_refused_with_another_key_purpose_subject_or_expiry():
    token = tokens.make(SECRET, tokens.VERIFY, 42, NOW + timedelta(days=1))
    subject, expiry, signature = token.split(".")
    for bad, secret, purpose in [(token, b"x" * 32, tokens.VERIFY), (token, SECRET, tokens.OPTOUT),
                                 (f"43.{expiry}.{signature}", SECRET, tokens.VERIFY),
                                 (f"{subject}.{int(expiry) + 86400}.{signature}", SECRET, tokens.VERIFY)]:
        with pytest.raises(tokens.TokenError, match="bad signature"):
            tokens.read(secret, purpose, bad, NOW)
    for malformed in ("", "42", "42.1.", "<script>.1.aaaaaaaaaaaaaaaaaaaaaa", token + "x", "-1." + token):
        with pytest.raises(tokens.TokenError, match="malformed"):
            tokens.read(SECRET, tokens.VERIFY, malformed, NOW)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        tokens.make(b"short", tokens.VERIFY, 1, NOW)


def _notice(settings) -> str:
    case = C.Case("local:1", C.NEW, NOW, NOW, id=7, owner_name="Hospital")
    exposure = Exposure("192.0.2.10", 104, service="dicom", severity="critical", last_seen=NOW, first_seen=NOW)
    msg = build_message(case, C.INITIAL, [exposure], "it@example.org", settings=settings, renderer=Renderer(),
                        now=NOW)
    return readable(msg.raw)


def test_a_notice_carries_a_verify_link_for_its_case_when_the_dashboard_is_configured(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    config = configuration.from_dict({"sender": {"from": "cert@example.org"},
                                      "web": {"url": "https://pw.example.org/", "secret_file": str(secret_file),
                                              "verify_days": 30}})
    text = _notice(config.settings)
    link = next(line.strip() for line in text.splitlines() if "/verify/" in line)
    assert link.startswith("https://pw.example.org/verify/")
    token = tokens.read(SECRET, tokens.VERIFY, link.rsplit("/", 1)[1], NOW)
    assert token.subject == 7 and token.expires_at == NOW + timedelta(days=30)
    # Without [web], the notice has no such section.
    assert "/verify/" not in _notice(configuration.from_dict({"sender": {"from": "cert@example.org"}}).settings)
    assert "FIXED IT?" not in _notice(configuration.Config().settings)


def test_web_section_needs_both_keys_and_a_readable_secret(tmp_path):
    with pytest.raises(configuration.ConfigError, match="both url and secret_file"):
        configuration.from_dict({"web": {"url": "https://pw.example.org"}})
    with pytest.raises(configuration.ConfigError, match="must start with https"):
        configuration.from_dict({"web": {"url": "javascript:alert(1)", "secret_file": str(tmp_path)}})
    # The file is read when a notice is built: a missing or short one stops it with the reason.
    missing = configuration.from_dict({"web": {"url": "https://pw.example.org", "secret_file": str(tmp_path / "no")}})
    with pytest.raises(ValueError, match="cannot read"):
        _notice(missing.settings)
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="32 bytes"):
        _notice(configuration.from_dict({"web": {"url": "https://pw.example.org", "secret_file": str(short)}}).settings)
