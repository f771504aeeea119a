"""Render a notice (Jinja2, plain text) and build the e-mail: body, CSV attachment, headers.

Plain text first: abuse desks read mail in ticket systems that show text, and a text body
survives forwarding. Rendering is pure: the same case, exposures and time give the same bytes,
which is what makes a retried message identical to the first try.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pacswatch.mailaddr import mailbox
from pacswatch.notify.advice import advice_for, verify_checks
from pacswatch.notify.cases import Case
from pacswatch.notify.csvexport import exposures_csv
from pacswatch.notify.exposure import Exposure
from pacswatch.output import address_key
from pacswatch.text import clean

if TYPE_CHECKING:
    import jinja2

_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
# Services a notice lists one by one (exposed, then protected); the rest are counted, and every
# one is in the attached CSV: a notice about 500 services was 3,500 lines no one reads.
MAX_LISTED = 25
DEFAULT_OPTOUT = ("If this is not your network, or you do not want these messages, reply with "
                  "\"opt out\" and the addresses or ranges; we will stop scanning and writing "
                  "about them.")


@dataclass(frozen=True)
class Sender:
    organisation: str = "A pacswatch operator"
    from_addr: str = "pacswatch@localhost"
    reply_to: str | None = None
    tag: str = "pacswatch"  # in subjects: lets recipients filter and us thread
    optout: str = DEFAULT_OPTOUT
    signature: str = "Sent with pacswatch"
    language: str = "en"
    # Services that refuse unknown callers or ask for a login (severity low): listed apart as
    # "reachable but protected", or left out of notices when false.
    list_protected: bool = True


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    attachment_name: str
    attachment: str  # CSV text


@dataclass
class Renderer:
    templates: str | Path | None = None  # a folder whose files override the shipped templates
    _env: jinja2.Environment | None = field(default=None, init=False, repr=False)

    def env(self) -> jinja2.Environment:
        if self._env is None:
            import jinja2  # when rendering, not at import: Sender is read after every scan (notify/config.py)

            loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("pacswatch.notify", "templates")]
            if self.templates:
                loaders.insert(0, jinja2.FileSystemLoader(str(self.templates)))
            # Plain text: no HTML autoescape; StrictUndefined so a template typo fails loudly
            # instead of sending a notice with a hole in it.
            env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=False,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
            env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M UTC") if d else "unknown"
            env.filters["wrap"] = _wrap
            self._env = env
        return self._env

    def render(self, kind: str, case: Case, exposures: Iterable[Exposure], *, sender: Sender,
               owner_name: str = "", followup_number: int = 0, verify_url: str | None = None) -> Rendered:
        ordered = sorted(exposures, key=lambda e: (-_RANK.get(e.severity or "", 0), address_key(e.ip, e.port)))
        # The subject and the summary count what is exposed (medium or worse); services that
        # refuse unknown callers are listed apart, so the count is what the owner must fix.
        exposed = [e for e in ordered if not e.protected]
        protected = [e for e in ordered if e.protected] if sender.list_protected else []
        listed = exposed + protected
        worst = exposed[0].severity if exposed else None
        attachment_name = f"{sender.tag}-case-{case.id}.csv"
        context = {
            "kind": kind, "case": case, "exposures": exposed, "protected": protected,
            "owner_name": _greeting_name(owner_name), "sender": sender, "worst": worst,
            "advice": advice_for(listed), "checks": verify_checks(exposed),
            "totals": {"studies": sum(e.studies or 0 for e in exposed),
                       "patients": sum(e.patients or 0 for e in exposed)},
            "followup_number": followup_number, "attachment_name": attachment_name, "max_listed": MAX_LISTED,
            "verify_url": verify_url,  # the dashboard's /verify link for this case, or None
        }
        env = self.env()
        subject = " ".join(env.get_template("subject.txt.j2").render(context).split())
        body = env.get_template(f"{kind}.txt.j2").render(context)
        body = "\n".join(line.rstrip() for line in body.splitlines()).strip("\n") + "\n"
        return Rendered(subject, body, attachment_name, exposures_csv(listed))


# What text.clean() leaves of a control character: "\x0d", "\u202e".
_ESCAPED = re.compile(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}")


def _greeting_name(name: str) -> str:
    """The owner's name for the greeting, or "" (a plain "Hello,"). A name that held control
    characters (an RDAP registrant "Good Hospital\r\nURGENT: call ...") is no one's real name:
    its text is not repeated in our voice, even escaped on one line."""
    cleaned = clean(name)
    return "" if _ESCAPED.search(cleaned) else cleaned


def _wrap(text: str, width: int = 72, indent: str = "  ") -> str:
    lines = textwrap.wrap(str(text), width=width, break_long_words=False, break_on_hyphens=False)
    return ("\n" + indent).join(lines)


def build_email(rendered: Rendered, *, sender: Sender, recipient: str, key: str, at: datetime,
                case_id: int | None, cc: Iterable[str] = ()) -> EmailMessage:
    """The message as it will be sent. The Message-ID is derived from the idempotency key, so a
    retry is the same message to every receiving system (which may use it to drop duplicates).

    Every address is validated as exactly one addr-spec (address.py) and every header holding
    one is built from `email.headerregistry.Address`: an invalid recipient raises AddressError
    (the caller skips that recipient), and an organisation name with a comma or a quote stays a
    display name."""
    msg = EmailMessage()
    sender_box = mailbox(sender.from_addr, sender.organisation)
    msg["From"] = sender_box
    msg["To"] = mailbox(recipient)
    if cc_boxes := [mailbox(c) for c in cc]:
        msg["Cc"] = cc_boxes
    if sender.reply_to:
        msg["Reply-To"] = mailbox(sender.reply_to)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<{key}@{sender_box.domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: keep vacation responders quiet
    msg["X-Pacswatch-Case"] = str(case_id)
    msg["X-Pacswatch-Key"] = key
    msg.set_content(rendered.body, charset="utf-8")
    msg.add_attachment(rendered.attachment.encode("utf-8"), maintype="text", subtype="csv",
                       filename=rendered.attachment_name)
    return msg
