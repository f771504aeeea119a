"""Parse target specs from the command line and from files into a TargetSet.

Accepted, one per argument or per file line:

    192.0.2.7   2001:db8::7           an address
    192.0.2.0/24   2001:db8::/120     a network (host bits must be zero, see _parse_network)
    192.0.2.10-192.0.2.20             a range, inclusive
    192.0.2.10-20                     the same, short form: the end replaces the last octet
    pacs.example.org                  a host name: every address it resolves to
    192.0.2.7:4242   pacs.example.org:104   [2001:db8::7]:11112
                                      a host with a pinned port, scanned on that port only
    @targets.txt                      a file of the above (not @file), '#' comments allowed

A list is all or nothing: every line is checked and every bad one reported in one TargetError,
so a typo on line 900 cannot leave a scan silently running on lines 1-899.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from pacswatch.targets._intervals import IPAddress, Span, canonical_span
from pacswatch.targets.ports import parse_port
from pacswatch.targets.specfile import (
    COMMAND_LINE,
    TargetError,
    TargetProblem,
    read_spec_file,
)
from pacswatch.targets.targetset import Endpoint, TargetSet

# Above this a scan is almost surely a typo (an IPv6 /64 is 2**64): fail early instead.
DEFAULT_MAX_ADDRESSES = 2**32

Resolver = Callable[[str], Iterable[str]]

# RFC 6761 section 6.3: "localhost" is loopback and is never sent to DNS; the one name without a
# dot that pacswatch resolves.
LOCALHOST = "localhost"


def system_resolver(name: str) -> list[str]:
    """Every address a name resolves to (A and AAAA), in resolver order, without repeats."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- one spec -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """One parsed spec: exactly one of span, ip, name is set; port only with ip or name."""

    span: Span | None = None
    ip: IPAddress | None = None
    name: str | None = None
    port: int | None = None


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_BRACKETED = re.compile(r"\[([^\]]*)\](?::(.*))?\Z")


def parse_address_range(text: str) -> Span:
    """An address, network or range as an inclusive span. Raises ValueError with a reason.

    Names are not accepted: this is the syntax of exclude and scope files, where an entry must
    mean the same addresses tomorrow as today.
    """
    text = text.strip()
    if "/" in text:
        return _parse_network(text)
    first, dash, last = text.partition("-")
    if dash:
        return _parse_range(first.strip(), last.strip())
    ip = _parse_ip(text)
    return ip.version, int(ip), int(ip)


def parse_spec(text: str) -> Spec:
    """One target spec (no @file). Raises ValueError with a reason."""
    text = text.strip()
    if not text:
        raise ValueError("empty target spec")
    if text.startswith("["):
        match = _BRACKETED.match(text)
        if not match:
            raise ValueError("expected [IPv6] or [IPv6]:PORT")
        ip = _parse_ip(match.group(1), canonical=False)
        if ip.version != 6:
            raise ValueError("brackets are for IPv6 addresses only")
        ip = canonical_ip(ip)
        port = match.group(2)
        return Spec(ip=ip, port=None if port is None else parse_port(port))
    if text.count(":") == 1:  # IPv4:PORT or NAME:PORT; a bare IPv6 address has two or more
        host, _, port_text = text.partition(":")
        host_spec = parse_spec(host)
        if host_spec.span is not None:
            raise ValueError("a port can be pinned on one host only, not a network or range")
        return Spec(ip=host_spec.ip, name=host_spec.name, port=parse_port(port_text))
    if "/" in text or _looks_like_range(text):
        return Spec(span=parse_address_range(text))
    if ":" in text:  # two or more colons: meant as IPv6, so say what is wrong with it as such
        return Spec(ip=_parse_ip(text))
    try:
        return Spec(ip=canonical_ip(ip_address(text)))
    except ValueError:
        pass
    if (reason := mistyped_address(text)) is not None:
        raise ValueError(reason)
    return Spec(name=_check_name(text))


def canonical_ip(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:192.0.2.7) as the IPv4 address it reaches, so that a
    target, an opt-out, a scope entry and a record all spell one host one way."""
    mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
    return mapped if mapped is not None else ip


def _parse_ip(text: str, *, canonical: bool = True) -> IPAddress:
    try:
        ip = ip_address(text)
    except ValueError:
        reason = mistyped_address(text)
        raise ValueError(reason or f"{text!r} is not an IPv4 or IPv6 address") from None
    return canonical_ip(ip) if canonical else ip


_IPV4_CHARS = frozenset("0123456789./-")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF.:/-[]%")


def mistyped_address(text: str) -> str | None:
    """Why `text` is a mistyped address and not a host name, naming the character at fault; None
    when it may be a name (or has no wrong character, so the address parser's reason is better).

    Meant as an address: two or more colons (IPv6), or a leading digit with at most one
    character that is not a digit, dot or slash, or four dot-separated parts of which three are
    decimal (127.44.0.1O, 10.0.0.l). Such a text is never sent to a resolver, which would
    answer for a name nobody meant.
    """
    if text.count(":") >= 2:
        allowed, what = _IPV6_CHARS, "a hexadecimal digit, colon or dot"
    else:
        stray = sum(c not in _IPV4_CHARS for c in text)
        labels = text.split(".")
        ipv4_like = len(labels) == 4 and sum(part.isascii() and part.isdecimal() for part in labels) >= 3
        if not text[:1].isdecimal() or not (stray <= 1 or ipv4_like):
            return None
        allowed, what = _IPV4_CHARS, "a digit or dot"
    for position, char in enumerate(text, start=1):
        if char not in allowed:
            return (f"{text!r} is not an IPv4 or IPv6 address: {char!r} at position {position} is not {what} "
                    "(it looks like an address, so it is not looked up as a host name)")
    return None


def _parse_network(text: str) -> Span:
    # strict: "10.1.2.3/8" is refused rather than widened to all of 10.0.0.0/8, a 16-million-fold
    # surprise; the error names the network the user probably meant.
    try:
        net = ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            raise ValueError(mistyped_address(text) or f"not a network: {exc}") from None
        raise ValueError(f"host bits set; did you mean {loose}?") from None
    return canonical_span((net.version, int(net.network_address), int(net.broadcast_address)))


def _looks_like_range(text: str) -> bool:
    # Names have hyphens too ("pacs-01.example.org"): it is a range only if it starts with an IP.
    first, dash, _ = text.partition("-")
    if not dash:
        return False
    try:
        ip_address(first.strip())
    except ValueError:
        return False
    return True


def _parse_range(first_text: str, last_text: str) -> Span:
    first = _parse_ip(first_text)
    if first.version == 4 and last_text.isascii() and last_text.isdecimal():
        # Short form 192.0.2.10-20: the end replaces the last octet.
        octet = int(last_text)
        if octet > 255:
            raise ValueError(f"range end {octet} is not an octet (0-255)")
        last: IPAddress = IPv4Address(int(first) & 0xFFFF_FF00 | octet)
    elif first.version == 6 and ":" not in last_text:
        raise ValueError("an IPv6 range needs a full end address (the short form is IPv4 only)")
    else:
        last = _parse_ip(last_text)
    if last.version != first.version:
        raise ValueError("range mixes IPv4 and IPv6")
    if int(last) < int(first):
        raise ValueError(f"range ends ({last}) before it starts ({first})")
    return first.version, int(first), int(last)


def _check_name(text: str) -> str:
    """A syntactically valid host name, or ValueError. Nothing is resolved here."""
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid internationalised host name") from None
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("not an address, network, range or host name")
    if labels[-1].isdecimal():
        # No top-level domain is numeric (RFC 3696 section 2), so this is a mistyped address.
        # Refusing it also keeps getaddrinfo from reading "10.1" as 10.0.0.1 (inet_aton rules).
        raise ValueError(f"{text!r} is not a valid IPv4 address")
    if len(labels) < 2 and name.lower() != LOCALHOST:
        # A single label is completed by the resolver's search list: what it reaches depends on
        # the machine, and "pacs" typed for an address would be sent to DNS.
        raise ValueError(f"{text!r} is not an address, and as a host name it has no dot: give the address "
                         "or the full name (pacs.example.org)")
    if not any(char.isalpha() for char in name):
        # Digits, dots and hyphens only (1-2.3-4): no real name looks like that, a typo might.
        raise ValueError(f"{text!r} is neither an address nor a host name (a name has a letter)")
    return text


NO_RESOLVE_REASON = "a host name, and --no-resolve forbids looking names up: give its address"


# --- many specs -----------------------------------------------------------------------------


def parse_targets(
    specs: Sequence[str],
    resolver: Resolver = system_resolver,
    *,
    max_addresses: int | None = DEFAULT_MAX_ADDRESSES,
    resolve: bool = True,
) -> TargetSet:
    """Parse command-line specs (including @file) into a TargetSet, or raise TargetError.

    Syntax is checked for every spec first and all problems raised together; names are
    resolved only when the whole list is valid, so a rejected list sends no DNS queries.
    `resolve=False` (--no-resolve) makes every host name a problem: nothing is looked up.
    """
    problems: list[TargetProblem] = []
    parsed: list[tuple[TargetProblem, Spec]] = []  # the problem each spec would be reported as
    for position, raw in enumerate(specs, start=1):
        if raw.strip().startswith("@"):
            path = raw.strip()[1:]
            try:
                lines = read_spec_file(path)
            except TargetError as exc:
                problems.extend(exc.problems)
                continue
            if not lines:  # a list that names nothing is a mistake (a wrong file), not "scan nothing"
                problems.append(TargetProblem(path, None, "", "no targets in it (empty, or only comments)"))
                continue
            for line in lines:
                where = TargetProblem(path, line.line, line.text, "")
                _parse_one(line.text, where, parsed, problems, in_file=True)
        else:
            _parse_one(raw, TargetProblem(COMMAND_LINE, position, raw, ""), parsed, problems)
    if not resolve:
        problems.extend(_at(where, NO_RESOLVE_REASON) for where, spec in parsed if spec.name is not None)
        problems.sort(key=lambda p: (p.source != COMMAND_LINE, p.source, p.line or 0))
    if problems:
        raise TargetError(problems)

    spans: list[Span] = []
    pinned: list[Endpoint] = []
    hostnames: dict[tuple[int, int], list[str]] = {}
    resolved: dict[str, list[IPAddress] | str] = {}  # per call, so each name is asked once
    for where, spec in parsed:
        if spec.span is not None:
            spans.append(spec.span)
            continue
        ips: list[IPAddress] = [spec.ip] if spec.ip is not None else []
        if spec.name is not None:
            if spec.name not in resolved:
                resolved[spec.name] = _resolve(spec.name, resolver)
            result = resolved[spec.name]
            if isinstance(result, str):
                problems.append(_at(where, result))
                continue
            ips = result
            for ip in ips:
                hostnames.setdefault((ip.version, int(ip)), []).append(spec.name)
        for ip in ips:
            if spec.port is None:
                spans.append((ip.version, int(ip), int(ip)))
            else:
                pinned.append(Endpoint(ip, spec.port, spec.name))
    if problems:
        raise TargetError(problems)

    targets = TargetSet(spans, pinned, hostnames)
    if max_addresses is not None and targets.size > max_addresses:
        reason = (
            f"{targets.size} addresses is more than the limit of {max_addresses}; "
            "check for a too-short prefix, or raise the limit"
        )
        raise TargetError([TargetProblem("targets", None, "", reason)])
    return targets


def _parse_one(
    text: str,
    where: TargetProblem,
    parsed: list[tuple[TargetProblem, Spec]],
    problems: list[TargetProblem],
    *,
    in_file: bool = False,
) -> None:
    if in_file and text.startswith("@"):
        # One level only: no include cycles, and every line's origin is one file away.
        problems.append(_at(where, "@file is not allowed inside a file"))
        return
    try:
        parsed.append((where, parse_spec(text)))
    except ValueError as exc:
        problems.append(_at(where, str(exc)))


def _at(where: TargetProblem, reason: str) -> TargetProblem:
    return TargetProblem(where.source, where.line, where.text, reason)


def _resolve(name: str, resolver: Resolver) -> list[IPAddress] | str:
    """The addresses of a name, or the reason it has none."""
    try:
        texts = list(resolver(name))
    except (OSError, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot resolve {name}: {detail}"
    ips: list[IPAddress] = []
    for text in texts:
        try:
            ip = ip_address(text)
        except ValueError:
            return f"resolver returned {text!r} for {name}, which is not an address"
        if isinstance(ip, IPv6Address) and ip.scope_id:
            ip = IPv6Address(int(ip))  # a zone index is local to this host; the plan is not
        ips.append(ip)
    if not ips:
        return f"{name} resolved to no address"
    return list(dict.fromkeys(ips))
