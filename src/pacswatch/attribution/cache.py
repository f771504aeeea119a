"""A cache of facts with expiry, by (subject, group): "192.0.2.7"/"rdap", "example.org"/"security.txt".

Empty answers are cached too (for `negative_ttl_s`): "no PTR" is a fact worth remembering, and
asking again for every address of a large scan is what gets a client rate-limited. Errors are
cached briefly (their facts carry a short ttl), so a registry that was down is asked again soon.
The store keeps the same entries in a table (notify/store.py implements this protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pacswatch.attribution.facts import Fact


@dataclass(frozen=True)
class CacheEntry:
    facts: tuple[Fact, ...]
    stored_at: datetime
    expires_at: datetime


def expiry(facts: list[Fact], now: datetime, negative_ttl_s: int) -> datetime:
    """An entry lives as long as its shortest-lived fact; an empty one for `negative_ttl_s`."""
    if not facts:
        return now + timedelta(seconds=negative_ttl_s)
    return min(f.expires_at() for f in facts)


class FactCache(Protocol):
    def get(self, subject: str, group: str, now: datetime) -> CacheEntry | None: ...

    def put(self, subject: str, group: str, facts: list[Fact], now: datetime, expires_at: datetime) -> None: ...


class MemoryCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], CacheEntry] = {}

    def get(self, subject: str, group: str, now: datetime) -> CacheEntry | None:
        entry = self._entries.get((subject, group))
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def put(self, subject: str, group: str, facts: list[Fact], now: datetime, expires_at: datetime) -> None:
        self._entries[(subject, group)] = CacheEntry(tuple(facts), now, expires_at)
