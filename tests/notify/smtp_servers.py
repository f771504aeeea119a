"""Real SMTP servers on loopback for the notification tests (aiosmtpd), with scripted failures:
refusals (4xx/5xx) at RCPT or DATA, a stall longer than the client's timeout, and a proxy that
drops the connection in the middle of the message."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self):
        return message_from_bytes(self.content, policy=policy.default)


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)  # next RCPT answers (then 250)
    data_replies: list[str] = field(default_factory=list)  # next DATA answers (then 250)
    rcpt_delays: list[float] = field(default_factory=list)
    connections: int = 0
    data_attempts: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_delays:
            await asyncio.sleep(self.rcpt_delays.pop(0))
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                                      or envelope.content))
        return "250 2.0.0 queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1; `tls` adds STARTTLS (required) and `users` AUTH (over TLS only)."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, users: dict[str, str] | None = None) -> None:
        self.handler = Handler()
        self.port = free_port()
        self.users = users
        kwargs = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="relay.example.org", ready_timeout=10, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and self.users is not None
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class DroppingProxy:
    """Forwards TCP to `target`; for the first `drops` connections, closes both sides once the
    client has sent DATA and `after` bytes of the message (a relay dying mid-message)."""

    def __init__(self, target: tuple[str, int], *, drops: int = 1, after: int = 200) -> None:
        self.target, self.drops, self.after = target, drops, after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._stop = threading.Event()

    def start(self) -> "DroppingProxy":
        self.listener.settimeout(0.2)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            drop = self.drops > 0
            if drop:
                self.drops -= 1
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, drop), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, drop: bool | None) -> None:
        seen, in_data = b"", False
        try:
            while True:
                chunk = src.recv(4096)
                if not chunk:
                    break
                if drop:
                    seen += chunk
                    marker = (b"\r\n" + seen).lower().find(b"\r\ndata\r\n")  # smtplib sends "data"
                    if not in_data and marker >= 0:
                        in_data, seen = True, seen[marker + 6:]
                    if in_data and len(seen) >= self.after:
                        dst.sendall(chunk[: max(0, len(chunk) - (len(seen) - self.after))])
                        self.dropped += 1
                        break
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
