"""Untrusted text: the one rule for strings a peer sent us.

Every string that comes from a scanned server or an owner's infrastructure (DICOM version names
and UIDs, HTTP titles, realms and headers, certificate subjects, PTR names, RDAP names and
contacts, security.txt fields) is cleaned where it enters pacswatch, by `clean()` or through the
`PeerText` type in the record model: control characters become visible escapes (`\\x1b`), the
length is capped. What is left is printable text with no line break, no terminal escape and no
bidirectional override, so it cannot start a new line in a notice or move a cursor.

Cleaning is not escaping. Each medium escapes on the way out, with the helpers below or the
medium's own tool: the terminal (`output.shown()`: a Rich `Text`, never markup), CSV cells
(`csv_cell()`), mail headers (`mailaddr.py` and `email.headerregistry`), HTML (Jinja2
autoescape). Output paths apply `clean()` again to what they read from a database, since a
database written by an older pacswatch may hold raw text.

This module is a leaf: anyone may import it, it imports nothing of pacswatch.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

# A peer's string longer than this is cut: no protocol fact we keep needs more, and a record,
# a table row or a notice line must not be made large by a peer.
MAX_PEER_TEXT = 256
_ELLIPSIS = "…"

# C0 and C1 controls, DEL; Unicode line and paragraph separators; bidirectional embeddings,
# overrides and isolates (a "Trojan Source" style reordering of a line); zero-width and BOM
# characters that hide text.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object, limit: int = MAX_PEER_TEXT) -> str:
    """A peer's value as one line of printable text, at most `limit` characters.

    Bytes are decoded as UTF-8 with replacement; control and formatting characters become
    visible escapes; the result is cut (with an ellipsis) at `limit` characters."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else str(value)
    # Cap before escaping too, so a megabyte of controls costs no more than `limit` of work.
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = _UNSAFE.sub(_escape_char, text)
    if len(text) > limit:
        text = text[: limit - 1] + _ELLIPSIS
    return text


def clean_optional(value: object, limit: int = MAX_PEER_TEXT) -> str | None:
    return None if value is None else clean(value, limit)


def _validate_peer_text(value: object) -> object:
    # None passes through for optional fields; anything else becomes clean text.
    return value if value is None else clean(value)


# The record model's type for every string a peer chose. Pydantic runs `clean` on the way in,
# so a record built anywhere (a probe, a database row, a worker's JSON) holds only clean text.
PeerText = Annotated[str, BeforeValidator(_validate_peer_text)]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run: text starting with = + - @ TAB CR LF gets a
    leading apostrophe (OWASP's CSV injection advice). Numbers, booleans and None pass as they
    are, so counts stay numbers."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_START):  # before cleaning, which would turn a TAB into "\\x09"
        return "'" + clean(text, limit=4096)
    return clean(text, limit=4096)


# A product version we trust as a version: digits first, then a short run of the characters that
# real products use (Orthanc "1.12.4", DCMTK "3.6.7", dcm4chee "5.31.0-SNAPSHOT").
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+_~-]{0,31}")


def version_or_none(value: object) -> str | None:
    """A peer's version string if it looks like one, else None (it is not a version, and we do
    not repeat free text from a peer as one)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text if _VERSION.fullmatch(text) else None
