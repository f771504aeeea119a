"""Sending: SMTP through a configured relay (STARTTLS or implicit TLS, optional login), or a
dry run that writes .eml files for review. Nothing is sent unless the configuration says
`enabled = true` and names a relay: the default is not to send.

One connection per message: a notice run sends tens of messages, not thousands, and a fresh
connection means one bad transaction cannot poison the next.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Protocol

from pacswatch.mailaddr import AddressError, addr_spec
from pacswatch.notify.outbox import OutboxMessage, SendResult
from pacswatch.safefile import write_atomic


class SendingDisabled(RuntimeError):
    """The configuration does not allow sending (the default)."""


@dataclass(frozen=True)
class SmtpConfig:
    enabled: bool = False
    host: str | None = None
    port: int = 587
    security: str = "starttls"  # starttls | tls | none (none: only for a relay on this machine)
    username: str | None = None
    password_env: str = "PACSWATCH_SMTP_PASSWORD"  # the password is read from here, never from a file
    timeout: float = 30.0
    helo: str | None = None
    envelope_from: str | None = None
    cafile: str | None = None  # a private CA for the relay's certificate

    def check(self) -> None:
        if not self.enabled:
            raise SendingDisabled("sending is disabled: set [smtp] enabled = true and a relay host in the "
                                  "configuration, or use --dry-run to write the messages to a folder")
        if not self.host:
            raise SendingDisabled("no SMTP relay configured ([smtp] host)")
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError(f"[smtp] security must be starttls, tls or none, not {self.security!r}")


class Transport(Protocol):
    def send(self, message: OutboxMessage) -> SendResult: ...


def check_sender(from_addr: str) -> None:
    """Refuse to send real mail from a local-only address, the default pacswatch@localhost among
    them (fine for a dry run): such a notice cannot be answered, and receivers filter it."""
    try:
        addr_spec(from_addr)
    except AddressError as exc:
        raise SendingDisabled(f"[sender] from: {exc}") from None
    domain = from_addr.rpartition("@")[2].lower()
    if "." not in domain or domain.endswith((".localhost", ".local")):
        raise SendingDisabled(f"the sender address is {from_addr!r}, which nobody can answer: set [sender] from "
                              "(for example from = \"cert@example.org\") in the configuration before sending")


class SmtpTransport:
    def __init__(self, config: SmtpConfig, *, envelope_from: str) -> None:
        config.check()
        check_sender(envelope_from)  # the header From (the notice's sender)
        if config.envelope_from:
            check_sender(config.envelope_from)
        self.config = config
        self.envelope_from = config.envelope_from or envelope_from

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.cafile)

    def send(self, message: OutboxMessage) -> SendResult:
        cfg = self.config
        try:
            addr_spec(message.recipient)  # a row from an older pacswatch may hold anything
        except AddressError as exc:
            return SendResult(False, True, f"not sent: {exc}")
        assert cfg.host is not None  # config.check() in __init__ refuses a missing host
        client: smtplib.SMTP
        try:
            if cfg.security == "tls":
                client = smtplib.SMTP_SSL(cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout,
                                          context=self._context())
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout)
        except smtplib.SMTPResponseException as exc:
            return _from_response(exc)
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult(False, False, f"connect: {type(exc).__name__}: {exc}")
        interrupted = False
        try:
            client.ehlo()
            if cfg.security == "starttls":
                if not client.has_extn("starttls"):
                    # Never fall back to clear text: the message names exposed hospitals.
                    return SendResult(False, True, "relay does not offer STARTTLS; refusing to send in clear")
                client.starttls(context=self._context())
                client.ehlo()
            if cfg.username:
                client.login(cfg.username, os.environ.get(cfg.password_env, ""))
            refused = client.sendmail(self.envelope_from, [message.recipient], message.raw)
            if refused:
                code, text = refused[message.recipient]
                return SendResult(False, code >= 500, f"{code} {_reply_text(text)}")
            return SendResult(True, detail="250 accepted")
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return SendResult(False, code >= 500, f"recipient refused: {code} {_reply_text(text)}")
        except smtplib.SMTPResponseException as exc:
            return _from_response(exc)
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError, smtplib.SMTPException) as exc:
            # Dropped or stalled before the final reply: not delivered (RFC 5321 4.1.1.4), retry.
            return SendResult(False, False, f"{type(exc).__name__}: {exc}")
        except BaseException:  # Ctrl-C or SIGTERM mid-transaction
            interrupted = True
            raise
        finally:
            if interrupted:
                # No QUIT: it would wait up to the timeout for a relay that may be why we are stuck.
                client.close()
            else:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()


def _reply_text(value: bytes | str) -> str:
    """A relay's reply text as it reads, not as Python's bytes repr (b'5.1.1 ...')."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _from_response(exc: smtplib.SMTPResponseException) -> SendResult:
    return SendResult(False, exc.smtp_code >= 500, f"{exc.smtp_code} {_reply_text(exc.smtp_error)}")


class DryRunTransport:
    """Writes each message to `folder/case<ID>-<kind>-<key>.eml`, and beside it a `.txt` a person
    can read (headers, body, attachment). Written atomically without following a link planted
    at either name (safefile.py); named by key, so running twice rewrites rather than duplicates."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.written: list[Path] = []

    def send(self, message: OutboxMessage) -> SendResult:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"case{message.case_id}-{message.kind}-{message.key[:12]}.eml"
        write_atomic(path, message.raw)
        write_atomic(path.with_suffix(".txt"), readable(message.raw))
        self.written.append(path)
        return SendResult(True, detail=f"written to {path}")


def readable(raw: bytes) -> str:
    """A message as a reviewer reads it: the headers that matter, the text body, and each text
    attachment in full (decoded, as the recipient's mail program would show it)."""
    msg = message_from_bytes(raw, policy=policy.default)
    lines = [f"{name}: {msg[name]}" for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date") if msg[name]]
    body = msg.get_body(("plain",))
    lines += ["", body.get_content().rstrip("\n") if body is not None else "(no text body)"]
    for part in msg.iter_attachments():
        if part.get_content_maintype() == "text":
            lines += ["", f"----- attachment {part.get_filename()} -----", part.get_content().rstrip("\r\n")]
    # The message travels with CRLF line ends (SMTP); the review file is a plain text file.
    return "\n".join(lines).replace("\r\n", "\n") + "\n"
