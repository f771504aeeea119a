"""Signed, expiring tokens for the links a person opens without logging in: the verify link each
notice carries (one per case) and the confirmation link of an opt-out request.

A token is `SUBJECT.EXPIRY.SIGNATURE`: the subject (a case id, a request id) and the expiry (Unix
seconds) in clear, and an HMAC-SHA256 over the purpose, the subject and the expiry, keyed by the
dashboard's secret. Nothing is stored: whoever holds the secret can check a token, and a token
made for one purpose ("verify") is refused for another ("optout"). Pure: time is an argument.

It lives in notify, not in the web package, because `pacswatch notify` makes the verify links
(notify sits below the web package and may not import it); the dashboard checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

VERIFY, OPTOUT = "verify", "optout"
_SIGNATURE_BYTES = 16  # 128 bits: a forgery is a guess in 2**128
_SHAPE = re.compile(r"([0-9]{1,18})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})")
MIN_SECRET_BYTES = 32


class TokenError(ValueError):
    """A token that is malformed, signed by another key or for another purpose, or expired."""


@dataclass(frozen=True)
class Token:
    subject: int
    expires_at: datetime


def _signature(secret: bytes, purpose: str, subject: int, expiry: int) -> str:
    message = f"pacswatch:{purpose}:{subject}:{expiry}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret key must be at least {MIN_SECRET_BYTES} bytes")


def make(secret: bytes, purpose: str, subject: int, expires_at: datetime) -> str:
    """A token for `subject` (a non-negative id) valid until `expires_at`."""
    _check_secret(secret)
    if subject < 0:
        raise ValueError("a token's subject is a non-negative id")
    expiry = int(expires_at.timestamp())
    return f"{subject}.{expiry}.{_signature(secret, purpose, subject, expiry)}"


def read(secret: bytes, purpose: str, token: str, now: datetime) -> Token:
    """The subject and expiry of a valid `token`; TokenError (with a reason a person may read:
    it says nothing about the key) otherwise."""
    _check_secret(secret)
    match = _SHAPE.fullmatch(token)
    if match is None:
        raise TokenError("this link is not one of ours (malformed)")
    subject, expiry, signature = int(match[1]), int(match[2]), match[3]
    if not hmac.compare_digest(signature, _signature(secret, purpose, subject, expiry)):
        raise TokenError("this link is not one of ours (bad signature)")
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if now >= expires_at:
        raise TokenError(f"this link expired on {expires_at:%Y-%m-%d %H:%M} UTC")
    return Token(subject, expires_at)


@dataclass(frozen=True)
class VerifyLinks:
    """How a notice's verify link is made: the dashboard's public address, the file of its
    secret, and how long a link works (notify config [web]; the dashboard checks the links with
    the same secret). The file is read when a link is made, so a configuration naming one that
    `pacswatch serve` has not made yet still loads; `notify` then fails with the reason."""

    base_url: str  # "https://pacswatch.example.org", no trailing slash needed
    secret_file: Path
    valid_for: timedelta = timedelta(days=60)

    def secret(self) -> bytes:
        try:
            secret = self.secret_file.expanduser().read_bytes()
        except OSError as exc:
            raise ValueError(f"[web] secret_file: cannot read {self.secret_file} ({exc.strerror or exc}); "
                             "pacswatch serve --secret-file makes it") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"[web] secret_file {self.secret_file}: the secret key must be at least "
                             f"{MIN_SECRET_BYTES} bytes")
        return secret

    def url(self, case_id: int, now: datetime) -> str:
        """The link for `case_id` made at `now` (a retried notice is built at the same `now`, so
        its bytes are the same)."""
        token = make(self.secret(), VERIFY, case_id, now + self.valid_for)
        return f"{self.base_url.rstrip('/')}/verify/{token}"
