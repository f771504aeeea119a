"""security.txt (RFC 9116): parse it (pure) and fetch it for a domain.

The file is fetched from the address our own resolver gave for the domain (attribution/dns.py),
with the domain in the Host header (and as the TLS server name), so that no lookup goes through
the system resolver and the tests can serve it from loopback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

MAX_BYTES = 32 * 1024  # RFC 9116 files are a few hundred bytes; a large answer is not one
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.*?)\s*$")
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
        """Contacts usable by e-mail, in the file's order (RFC 9116 2.5.3: first is preferred)."""
        return [c[len("mailto:"):] for c in self.contacts if c.lower().startswith("mailto:")]


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
    return "\n".join(line[2:] if line.startswith("- ") else line for line in lines), True


def _parse_expires(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SecurityTxtError(f"Expires is not an RFC 3339 date: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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


async def fetch(client: httpx.AsyncClient, domain: str, address: str, *, scheme: str = "https",
                port: int | None = None, timeout: float = 10.0) -> tuple[str, str] | None:
    """GET /.well-known/security.txt (then the legacy /security.txt, RFC 9116 3) from `address`
    as `domain`. Returns (url, text) or None when neither answers 200 with text/plain."""
    import httpx  # here, not at the top: owner.py (and so every scan's config) imports this module

    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{port}" if port else host
    for path in ("/.well-known/security.txt", "/security.txt"):
        url = f"{scheme}://{netloc}{path}"
        try:
            async with client.stream("GET", url, headers={"Host": domain}, timeout=timeout,
                                     extensions={"sni_hostname": domain}) as response:
                if response.status_code != 200:
                    continue
                if not response.headers.get("content-type", "").lower().startswith("text/plain"):
                    continue  # RFC 9116 3: MUST be text/plain; an HTML error page is not a file
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        break
                if len(body) > MAX_BYTES:
                    continue
                return f"{scheme}://{domain}{':' + str(port) if port else ''}{path}", body.decode("utf-8", "replace")
        except httpx.HTTPError:
            continue
    return None
