"""Accounts of the dashboard: users with a role, argon2 password hashes, sessions and API tokens.

Used by `pacswatch users ...` (cli/web.py) and by the login (auth.py). Secrets handed to a person
(session cookie, API token) are random; the database keeps their SHA-256 only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from pacswatch.store.web_tables import api_tokens, users, web_sessions
from pacswatch.web.db import reading, writing

ROLES = ("viewer", "analyst", "admin")  # each may do what the ones before it may
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id with the library's current parameters; it keeps no state


class AccountError(ValueError):
    """A user name, role or password that cannot be used, said in a sentence."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this user's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise AccountError(f"{name!r} cannot be a user name: 1 to 64 letters, digits and . _ - @")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"{role!r} is not a role: {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(id=row.id, name=row.name, role=row.role)


def add_user(engine: Engine, name: str, role: str, password: str, at: datetime) -> User:
    check_name(name)
    check_role(role)
    check_password(password)
    with writing(engine) as conn:
        if conn.execute(select(users.c.id).where(users.c.name == name)).first():
            raise AccountError(f"there is already a user {name!r}")
        user_id = conn.execute(insert(users).returning(users.c.id), {
            "name": name, "role": role, "password_hash": _hasher.hash(password), "created_at": at,
            "password_changed_at": at}).scalar_one()
    return User(user_id, name, role)


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(select(users.c.id, users.c.name, users.c.role, users.c.created_at)
                                              .order_by(users.c.name)).mappings()]


def remove_user(engine: Engine, name: str) -> bool:
    with writing(engine) as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if user_id is None:
            return False
        conn.execute(delete(users).where(users.c.id == user_id))  # sessions and tokens cascade
        return True


def set_password(engine: Engine, name: str, password: str, at: datetime) -> bool:
    """A new password; the user's sessions end (whoever knew the old one is logged out)."""
    check_password(password)
    with writing(engine) as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if user_id is None:
            return False
        conn.execute(update(users).where(users.c.id == user_id)
                     .values(password_hash=_hasher.hash(password), password_changed_at=at))
        conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
        return True


def authenticate(engine: Engine, name: str, password: str) -> User | None:
    """The user when the password is right, else None. An unknown name costs a hash too, so the
    answer's time does not say which names exist."""
    with reading(engine) as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return _user(row) if row is not None else None


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# --- sessions ----------------------------------------------------------------------------------


def start_session(engine: Engine, user: User, at: datetime, hours: float) -> str:
    """A new session for `user`; returns the token the cookie carries."""
    token = secrets.token_urlsafe(32)
    with writing(engine) as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < at))  # the expired ones go
        conn.execute(insert(web_sessions), {"token_hash": token_hash(token), "user_id": user.id, "created_at": at,
                                            "expires_at": at + timedelta(hours=hours)})
    return token


def session_user(conn: Connection, token: str, at: datetime) -> User | None:
    row = conn.execute(select(users.c.id, users.c.name, users.c.role)
                       .join(web_sessions, web_sessions.c.user_id == users.c.id)
                       .where(web_sessions.c.token_hash == token_hash(token),
                              web_sessions.c.expires_at > at)).first()
    return _user(row) if row is not None else None


def end_session(engine: Engine, token: str) -> None:
    with writing(engine) as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == token_hash(token)))


# --- API tokens --------------------------------------------------------------------------------

TOKEN_PREFIX = "pw_"  # recognisable in a leaked file or a log


def new_api_token(engine: Engine, name: str, at: datetime, label: str | None = None) -> str:
    """A new API token for user `name`, shown once; the database keeps its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with writing(engine) as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if user_id is None:
            raise AccountError(f"there is no user {name!r}")
        conn.execute(insert(api_tokens), {"token_hash": token_hash(token), "user_id": user_id, "label": label,
                                          "created_at": at})
    return token


def token_user(engine: Engine, token: str, at: datetime) -> User | None:
    with writing(engine) as conn:
        row = conn.execute(select(users.c.id, users.c.name, users.c.role, api_tokens.c.id.label("token_id"))
                           .join(api_tokens, api_tokens.c.user_id == users.c.id)
                           .where(api_tokens.c.token_hash == token_hash(token))).first()
        if row is None:
            return None
        conn.execute(update(api_tokens).where(api_tokens.c.id == row.token_id).values(last_used_at=at))
    return _user(row)


def user_count(engine: Engine) -> int:
    with reading(engine) as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar_one()
