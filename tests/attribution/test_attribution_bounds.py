"""The pure guards of attribution's intake: the bounded body decoder and its coding rule, the
same-origin rule for redirects, and the checks on e-mail addresses and host names
(attribution/httpfetch.py, attribution/entry.py). The servers that send such things are in
tests/hostile/test_attribution.py."""

from __future__ import annotations

import zlib

import pytest

from pacswatch.attribution.entry import host_name, mailbox
from pacswatch.attribution.httpfetch import BoundedBody, FetchError, coding, same_origin
from pacswatch.attribution.local import validate

CAP = 1 << 20


def gzip_bytes(data: bytes, wbits: int = 31) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("identity", None), ("gzip", "gzip"), (" GZIP ", "gzip"), ("x-gzip", "x-gzip"),
    ("deflate", "deflate"), ("identity, gzip", "gzip"),
])
def test_one_known_coding_is_undone(header, expected):
    assert coding(header) == expected


@pytest.mark.parametrize(("header", "why"), [
    ("gzip, gzip", "stacks 2 codings"), ("gzip,deflate", "stacks 2 codings"), ("gzip, gzip, gzip", "stacks 3"),
    ("br", "unknown Content-Encoding 'br'"), ("compress", "unknown"), ("zstd", "unknown"),
    ("gzip\x1b[2J", "unknown Content-Encoding 'gzip\\x1b[2j'"),
])
def test_stacked_or_unknown_codings_are_refused(header, why):
    with pytest.raises(FetchError, match="refused") as caught:
        coding(header)
    assert why in str(caught.value) and "\x1b" not in str(caught.value)


@pytest.mark.parametrize(("name", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_a_body_is_decoded_byte_by_byte(name, wbits):
    text = b"Contact: mailto:security@example.org\n" * 50
    body = BoundedBody(name, CAP)
    for i in range(len(encoded := gzip_bytes(text, wbits))):
        body.feed(encoded[i:i + 1])
    assert body.body() == text


def test_decoding_stops_at_the_cap_not_after():
    """2 MiB of zeros gzipped is 2 KB: decoding stops once the cap is passed, and never holds
    more than the cap (plus one byte) of decoded output."""
    body = BoundedBody("gzip", CAP)
    with pytest.raises(FetchError, match=f"larger than {CAP} bytes once decoded"):
        body.feed(gzip_bytes(bytes(2 * CAP)))
    assert sum(len(p) for p in body._parts) <= CAP


def test_raw_bytes_are_capped_too():
    """Empty stored blocks decode to nothing: without a cap on the wire they would go on for ever."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    header = c.compress(b"") + c.flush(zlib.Z_FULL_FLUSH)  # the gzip header and one empty stored block
    empty_block = b"\x00\x00\x00\xff\xff"  # RFC 1951 3.2.4: not last, stored, length 0
    body = BoundedBody("gzip", 4096)
    body.feed(header)
    with pytest.raises(FetchError, match="more than 4096 bytes on the wire"):
        for _ in range(2000):
            body.feed(empty_block)
    assert body._parts == []


def test_a_plain_body_is_capped():
    body = BoundedBody(None, 10)
    body.feed(b"0123456789")
    with pytest.raises(FetchError, match="more than 10 bytes on the wire"):
        body.feed(b"x")


def test_damaged_cut_and_trailing_compressed_bodies_are_refused():
    whole = gzip_bytes(b"x" * 1000)
    with pytest.raises(FetchError, match="damaged"):
        BoundedBody("gzip", CAP).feed(b"\x1f\x8b\x08\x00garbage-garbage")
    cut = BoundedBody("gzip", CAP)
    cut.feed(whole[:-6])
    with pytest.raises(FetchError, match="cut short"):
        cut.body()
    with pytest.raises(FetchError, match="after the end"):
        BoundedBody("gzip", CAP).feed(whole + whole)  # a second member: a second layer of work


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://rdap.example.net/ip/1", "https://RDAP.example.net:443/other", True),
    ("http://example.org:8080/a", "http://example.org:8080/b?x", True),
    ("http://example.org/a", "https://example.org/a", False),
    ("http://example.org/a", "http://example.org:8080/a", False),
    ("http://example.org/a", "http://evil.example/a", False),
    ("http://example.org/a", "http://example.org.evil.example/a", False),
])
def test_same_origin(a, b, same):
    assert same_origin(a, b) is same


@pytest.mark.parametrize("value", ["security@example.org", "abuse+pacs@noc.example.net", "a.b@example.org"])
def test_one_plain_address_is_a_mailbox(value):
    assert mailbox(value) == value


@pytest.mark.parametrize("value", [
    "a@example.org, b@example.org", "a@example.org,b@example.org", "Name <a@example.org>", "<a@example.org>",
    "a@example.org\r\nBcc: b@example.org", "a@example.org\n", "a@example.org\x1b[2J", "\"a b\"@example.org",
    "a@@example.org", "example.org", "", "a@example.org (comment)", 42, None,
])
def test_anything_else_is_refused_with_a_clean_reason(value):
    with pytest.raises(ValueError) as caught:
        mailbox(value)
    assert not any(c in str(caught.value) for c in "\r\n\x1b")


def test_the_local_table_refuses_what_attribution_refuses():
    assert validate("192.0.2.0/24", ["soc@example.org"]) == []
    problems = validate("192.0.2.0/24", ["soc@example.org\r\nBcc: x@example.org", "a@example.org, b@example.org"])
    assert len(problems) == 2 and not any("\r" in p or "\n" in p for p in problems)


@pytest.mark.parametrize(("value", "expected"), [
    ("pacs.Example.org.", "pacs.example.org"), ("_dmarc.example.org", "_dmarc.example.org"),
    ("localhost", None), ("a..example.org", None), ("-a.example.org", None), ("a-.example.org", None),
    ("pacs\\027[31m.example.org", None), ("pacs example.org", None), ("x" * 64 + ".example.org", None),
    (".".join(["a" * 60] * 5), None), (None, None),
])
def test_host_name(value, expected):
    assert host_name(value) == expected
