"""E-mail addresses for headers and envelopes: one validated addr-spec, or a reason why not.

A recipient reaches us from places we do not control (an RDAP contact, a security.txt line, an
operator's typing), and it ends up in a To header and an RCPT TO command. A CR or LF there ends
the header block or the SMTP command; a comma adds a recipient. So an address is accepted only
when the whole text is exactly one plain addr-spec (RFC 5322 3.4.1, dot-atom local part, a host
name domain), and headers are built by `email.headerregistry.Address`, never by formatting.

A leaf (it imports only `text`): attribution checks the contacts it finds with the same rule
that notify applies to the recipients it sends to.
"""

from __future__ import annotations

import re
from email.headerregistry import Address

from pacswatch.text import clean

# RFC 5322 atext, as a dot-atom; quoted local parts and address literals are legal but no abuse
# desk uses them, and refusing them keeps the check small enough to read.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class AddressError(ValueError):
    """Not exactly one plain e-mail address."""


def has_control(text: str) -> bool:
    """True when `text` holds a control character or a line separator (a header or a command
    line would end there)."""
    return bool(_CONTROL.search(text))


def addr_spec(text: object) -> str:
    """`text` as one addr-spec, or AddressError saying why not (the message shows the text
    escaped, so an error line cannot be split by it either)."""
    if not isinstance(text, str):
        raise AddressError(f"not an e-mail address: \"{clean(text)}\"")
    if has_control(text):
        raise AddressError(f"control character in e-mail address \"{clean(text)}\"")
    if len(text) > MAX_ADDRESS:
        raise AddressError(f"e-mail address longer than {MAX_ADDRESS} characters: \"{clean(text, 60)}\"")
    if not _ADDR_SPEC.fullmatch(text):
        raise AddressError(f"not exactly one plain e-mail address: \"{clean(text)}\"")
    return text


def mailbox(text: str, display_name: str = "") -> Address:
    """A header mailbox: the validated address with an optional display name, which
    `email.headerregistry` quotes or encodes (a comma or a quote in a name stays in the name)."""
    username, _, domain = addr_spec(text).rpartition("@")
    return Address(display_name=clean(display_name), username=username, domain=domain)
