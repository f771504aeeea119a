"""security.txt (RFC 9116): parse it (pure) and fetch it for a domain.

The file is fetched from the address our own resolver gave for the domain (attribution/dns.py),
with the domain in the Host header (and as the TLS server name), so that no lookup goes through
the system resolver and the tests can serve it from loopback; the attributor checks that address
against the blocklist, opt-outs and scope before asking. The fetch is bounded (httpfetch.py), and
each Contact is checked where it enters (checked_contacts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

from pacswatch.attribution import httpfetch
from pacswatch.attribution.entry import mailbox
from pacswatch.text import clean

if TYPE_CHECKING:
    import httpx

MAX_BYTES = 32 * 1024  # RFC 9116 files are a few hundred bytes; a large answer is not one
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.*?)\s*$")
# A URI shown to people: no space, quote or angle bracket (a second URI or markup hiding in it).
_UNSAFE_URI = re.compile(r"[\s\"<>\\]")
_MULTI = {"contact", "encryption", "acknowledgments", "canonical", "policy", "hiring"}


class SecurityTxtError(ValueError):
    """The document is not a usable security.txt (RFC 9116 says to ignore such files)."""


@dataclass(frozen=True)
class SecurityTxt:
    contacts: tuple[str, ...]
    expires: datetime | None
    languages: tuple[str, ...] = ()
    policy: tuple[str, ...] = ()
    canonical: tuple[str, ...] = ()
    encryption: tuple[str, ...] = ()
    signed: bool = False
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def emails(self) -> list[str]:
        """Contacts usable by e-mail, each exactly one checked address, in the file's order
        (RFC 9116 2.5.3: first is preferred)."""
        kept, _notes = checked_contacts(self.contacts)
        return [c[len("mailto:"):] for c in kept if c.startswith("mailto:")]


def _strip_signature(text: str) -> tuple[str, bool]:
    """The signed body of an OpenPGP cleartext-signed file (RFC 4880 7), unverified: the
    signature is not checked, only removed, and `signed` says it was there."""
    if "-----BEGIN PGP SIGNED MESSAGE-----" not in text:
        return text, False
    body = text.split("-----BEGIN PGP SIGNED MESSAGE-----", 1)[1]
    body = body.split("-----BEGIN PGP SIGNATURE-----", 1)[0]
    lines = body.splitlines()
    while lines and lines[0].strip():  # armor headers (Hash: SHA256) up to the blank line
        lines.pop(0)
    return "\n".join(line.removeprefix("- ") for line in lines), True


def _parse_expires(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads RFC 3339's "Z" too
    except ValueError as exc:
        raise SecurityTxtError(f"Expires is not an RFC 3339 date: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse(text: str) -> SecurityTxt:
    """Parse a security.txt. Contact is required (RFC 9116 2.5.3); Expires is required too, but
    a file without it still names a contact, so it is kept with `expires=None`."""
    text, signed = _strip_signature(text)
    fields: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _FIELD.match(line)
        if not match:
            continue  # RFC 9116 2.3: lines that are not fields are ignored
        fields.setdefault(match.group(1).lower(), []).append(match.group(2))
    contacts = tuple(c for c in fields.get("contact", []) if c)
    if not contacts:
        raise SecurityTxtError("no Contact field")
    expires_values = fields.get("expires", [])
    if len(expires_values) > 1:
        raise SecurityTxtError("Expires appears more than once")  # RFC 9116 2.5.5: MUST NOT
    expires = _parse_expires(expires_values[0]) if expires_values else None
    langs = tuple(x.strip() for v in fields.get("preferred-languages", []) for x in v.split(",") if x.strip())
    known = _MULTI | {"expires", "preferred-languages"}
    return SecurityTxt(contacts, expires, langs, tuple(fields.get("policy", ())), tuple(fields.get("canonical", ())),
                       tuple(fields.get("encryption", ())), signed,
                       {k: v for k, v in fields.items() if k not in known})


def candidate_domains(host: str, *, max_levels: int = 3) -> list[str]:
    """Where to look for a host's security.txt: its parent domains down to two labels
    (pacs.radiology.example.org -> radiology.example.org, example.org).

    The host itself is left out when it has a parent: it is the exposed server, and asking it for
    a file would be one more probe of a system whose owner has not been told yet; the
    organisation's domain is where RFC 9116 files live. Without a public-suffix list this cannot
    know where the registered domain starts; two labels is the shortest that can be one.
    """
    labels = host.rstrip(".").lower().split(".")
    if len(labels) <= 2:
        return [".".join(labels)] if len(labels) == 2 else []
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)][:max_levels]


def checked_contacts(contacts: Iterable[str]) -> tuple[list[str], list[str]]:
    """The Contact values to keep, and a note for each one dropped (pure).

    A `mailto:` line yields at most one mailbox: the address (before any `?subject=`, with %XX
    decoded) must be exactly one plain e-mail address (entry.mailbox), so `mailto:a@x, b@y` is
    dropped, never two recipients. An `https:` contact is kept cleaned (shown, never mailed);
    anything else is dropped."""
    kept: list[str] = []
    notes: list[str] = []
    for value in contacts:
        lowered = value.lower()
        if lowered.startswith("mailto:"):
            address = unquote(value[len("mailto:"):].split("?", 1)[0])
            try:
                kept.append("mailto:" + mailbox(address))
            except ValueError as exc:
                notes.append(f"Contact '{clean(value, 120)}' dropped: {exc}")
        elif lowered.startswith("https://") and not _UNSAFE_URI.search(value):
            kept.append(clean(value))
        else:
            notes.append(f"Contact '{clean(value, 120)}' dropped: neither a mailto: address nor an https: URI")
    return kept, notes


@dataclass(frozen=True)
class Fetched:
    url: str  # where the file was found, named by the domain (not the address asked)
    text: str | None  # None: no file at this address (every path answered something else)
    notes: tuple[str, ...] = ()  # answers refused on the way (too large, a redirect elsewhere, ...)


async def fetch(client: httpx.AsyncClient, domain: str, address: str, *, scheme: str = "https",
                port: int | None = None, max_bytes: int = MAX_BYTES, read_timeout: float = 10.0) -> Fetched:
    """GET /.well-known/security.txt (then the legacy /security.txt, RFC 9116 3) from `address`
    as `domain`. A file is an answer 200 with text/plain; each refused answer leaves a note. The
    caller bounds the whole by its deadline (httpfetch.py)."""
    base = f"{scheme}://{domain}{':' + str(port) if port else ''}"
    notes: list[str] = []
    for path in ("/.well-known/security.txt", "/security.txt"):
        try:
            got = await httpfetch.get(client, base + path, max_bytes=max_bytes, address=address,
                                      read_timeout=read_timeout)
        except httpfetch.FetchError as exc:
            notes.append(f"{base}{path} from {address}: {exc}")
            continue
        if got.status != 200:
            continue
        if not got.content_type.lower().startswith("text/plain"):
            continue  # RFC 9116 3: MUST be text/plain; an HTML error page is not a file
        return Fetched(got.url, got.body.decode("utf-8", "replace"), tuple(notes))
    return Fetched(base, None, tuple(notes))
