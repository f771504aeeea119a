"""The web client's edge: exception mapping to the status vocabulary, and same-origin rules."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

from pacswatch.net.tls import ScannerTlsContext
from pacswatch.probes.http_client import HEAD_TOO_LARGE, WebClient, http_error


def chained(outer: BaseException, *causes: BaseException) -> BaseException:
    current = outer
    for cause in causes:
        current.__cause__ = cause
        current = cause
    return outer


@pytest.mark.parametrize("exc, tcp_established, status", [
    (chained(httpx.ConnectError("x"), OSError("All connection attempts failed"),
             ConnectionRefusedError(111, "refused")), False, "connection-refused"),
    (chained(httpx.ConnectError("x"), ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")), True,
     "tls-error"),
    (chained(httpx.ConnectError("x"), ConnectionResetError(104, "reset")), True, "tls-error"),  # mid-handshake
    (chained(httpx.ConnectError("x"), ConnectionResetError(104, "reset")), False, "connection-refused"),
    (httpx.ConnectTimeout("x"), False, "connection-timeout"),
    (httpx.ConnectTimeout("x"), True, "tls-error"),
    (httpx.ReadTimeout("x"), True, "io-timeout"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True, "protocol-error"),
    (httpx.RemoteProtocolError("Receive buffer too long"), True, "protocol-error"),
    (chained(httpx.ReadError("x"), ConnectionResetError(104, "reset")), True, "protocol-error"),
    (httpx.UnsupportedProtocol("x"), False, "error"),
    (ValueError("our bug"), False, "error"),
])
def test_http_error_maps_to_one_status(exc, tcp_established, status):
    assert http_error(exc, tcp_established=tcp_established).status == status


def test_oversized_heads_are_named():
    assert http_error(httpx.RemoteProtocolError("Receive buffer too long")).detail == HEAD_TOO_LARGE


@pytest.mark.parametrize("url, same", [
    ("http://127.0.0.5:8042/app/explorer.html", True),
    ("http://127.0.0.5:8042", True),
    ("https://127.0.0.5:8042/", False),  # another scheme is another origin
    ("http://127.0.0.5:8043/", False),
    ("http://127.0.0.6:8042/", False),
    ("http://localhost:8042/", False),  # a name, even for loopback, is not the address we were given
    ("http://127.0.0.5:8042@127.0.0.6/", False),
    ("//127.0.0.6:8042/", False),
    ("javascript:alert(1)", False),
])
def test_same_origin(url, same):
    async def go():
        loop = asyncio.get_running_loop()
        client = WebClient("http", "127.0.0.5", 8042, user_agent="t", timeout=1.0, deadline=loop.time() + 1,
                           ssl_context=ScannerTlsContext().context)
        try:
            return client.same_origin(url)
        finally:
            await client.aclose()

    assert asyncio.run(go()) is same


def test_ipv6_origin_is_bracketed():
    async def go():
        loop = asyncio.get_running_loop()
        client = WebClient("http", "::1", 80, user_agent="t", timeout=1.0, deadline=loop.time() + 1,
                           ssl_context=ScannerTlsContext().context)
        try:
            return client.url("/system"), client.same_origin("http://[::1]/x")
        finally:
            await client.aclose()

    assert asyncio.run(go()) == ("http://[::1]:80/system", True)


def test_cookies_go_back_to_the_origin_and_a_bad_location_is_kept_as_a_fact():
    # Requests go straight to the transport (the client's send parsed a Location and raised on
    # a malformed one); cookies must still come back, or a cookie-check redirect loops.
    async def handle(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        if head.startswith(b"get /bad "):
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://[\\]/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        elif b"cookie: seen=1" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /\r\nSet-Cookie: seen=1; Path=/\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.86.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        client = WebClient("http", "127.0.86.1", port, user_agent="test", timeout=2.0, deadline=loop.time() + 5,
                           ssl_context=ScannerTlsContext().context)
        try:
            return await client.get("/"), await client.get("/bad")
        finally:
            await client.aclose()
            server.close()

    page, bad = asyncio.run(main())
    assert page.status == 200 and page.body == b"ok" and page.redirects == 1
    assert bad.status == 302 and bad.malformed_location == "http://[\\]/"
