"""What the dashboard is started with (`pacswatch serve` builds it from its options)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SECRET_BYTES = 32


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class WebSettings:
    """database_url: as --database (None: PACSWATCH_DATABASE_URL or the user's file).
    secret: the key that signs CSRF tokens and verify links; `secret_from_file` reads or makes it.
    tls: served over HTTPS (session cookies get Secure). public_name: who runs this scanner, for
    the public pages. notify_config: the notify configuration file (SMTP and sender), if any.
    geoip_path: a MaxMind-format .mmdb for the overview's country map, if any."""

    database_url: str | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(SECRET_BYTES), repr=False)
    tls: bool = False
    public_name: str | None = None
    notify_config: Path | None = None
    geoip_path: Path | None = None
    session_hours: float = 12.0
    login_attempts: int = 5  # failed logins allowed per address and per user name ...
    login_window_seconds: float = 900.0  # ... within this many seconds
    clock: Callable[[], datetime] = utc_now


def secret_from_file(path: Path) -> bytes:
    """The secret kept in `path` (made, readable by its owner only, when missing): sessions and
    signed links then survive a restart of the server."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) >= SECRET_BYTES:
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(SECRET_BYTES)
    # O_EXCL: never write through a link planted where the secret should be.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600) if not path.exists() \
        else os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return data
