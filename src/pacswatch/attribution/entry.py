"""What attribution takes in from DNS, RDAP and security.txt, checked where it enters (pure).

Names and handles are peer text: `text.clean` makes them one printable line. Two kinds of value
are used for more than showing, so they are checked, not just cleaned, and refused when they are
not what they claim: an e-mail address (it becomes a recipient: a CR/LF or a second address in
it would reach a mail header or an SMTP command) and a host name (it becomes a DNS query, a Host
header and the name a security.txt is asked for).
"""

from __future__ import annotations

import re
from email.utils import parseaddr

from pacswatch.mailaddr import AddressError, addr_spec
from pacswatch.text import clean


def mailbox(value: object) -> str:
    """`value` as exactly one plain e-mail address; ValueError with a note saying why
    not (the note holds the value cleaned).

    Two readings must agree: `email.utils.parseaddr` must see the whole text as one address with
    no display name, and the strict addr-spec check (mailaddr.py, the one that guards
    headers) must accept it. "a@x, b@y", "Name <a@x>" and "a@x\\r\\nBcc: c@y" all fail."""
    try:
        address = addr_spec(value)  # refuses a value that is not a string, too
    except AddressError as exc:
        raise ValueError(str(exc)) from exc
    name, parsed = parseaddr(str(value))  # a string: addr_spec refused anything else
    if name or parsed != address:
        raise ValueError(f"not exactly one plain e-mail address: '{clean(value, 80)}'")
    return address


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def host_name(value: object) -> str | None:
    """`value` as a lower-case host name without the final dot, or None when it is not one
    (letters, digits, hyphens and underscores in 1-63 character labels, at most 253 in all, at
    least two labels). dnspython shows odd bytes in a label as `\\DDD`; such a name is not used."""
    if not isinstance(value, str):
        return None
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name
