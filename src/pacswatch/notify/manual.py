"""A follow-up or an escalation a person asks for now (the dashboard's "send follow-up now" and
"escalate"), instead of when the policy's clock says (workflow.review_case).

What is sent is what a pass would send, by the same code: the case's services that a notice may
name (opt-outs applied, workflow.opted_out), the routes of their attributions (workflow.routes,
opted-out contacts taken out), the message built and keyed by workflow.build_message, queued in
the outbox and delivered by delivery.deliver with its rate limits, suppression window and the
opt-out check at claim. Only the timing is the person's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pacswatch.notify import cases as C
from pacswatch.notify.config import Config
from pacswatch.notify.delivery import DeliveryReport, deliver
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.outbox import OutboxMessage
from pacswatch.notify.render import Renderer
from pacswatch.notify.smtp import SmtpTransport, Transport
from pacswatch.notify.store import NotifyStore
from pacswatch.notify.workflow import without_optouts, build_message, opted_out, routes

KINDS = (C.FOLLOWUP, C.ESCALATION)


class NotSendable(ValueError):
    """Why this case cannot be sent that message now, in words for the person who asked."""


@dataclass(frozen=True)
class SentNow:
    message: OutboxMessage
    delivery: DeliveryReport


def plan_now(store: NotifyStore, case_id: int, kind: str, exposures: dict[tuple[str, int], Exposure], *,
             config: Config, now: datetime) -> OutboxMessage:
    """The message `kind` for the case, built now; NotSendable with the reason otherwise."""
    if kind not in KINDS:
        raise NotSendable(f"only a follow-up or an escalation can be sent by hand, not {kind!r}")
    case = store.case(case_id)
    if case is None:
        raise NotSendable(f"there is no case {case_id}")
    if not case.is_open:
        raise NotSendable(f"case {case_id} is {case.state}: nothing is sent about it")
    if case.notified_at is None:
        raise NotSendable(f"case {case_id} has had no first notice yet: pacswatch notify sends it")
    optouts = store.optouts()
    keys = store.services_of(case_id)
    excluded = opted_out(keys, exposures, optouts)
    members = [exposures[k] for k in keys if k in exposures and k not in excluded and exposures[k].exposed]
    if not members:
        raise NotSendable(f"no service of case {case_id} is exposed now (or every one is opted out): "
                          "a reminder would say nothing true")
    attributions = store.attributions()
    chosen = [without_optouts(attributions[ip], optouts) for ip in sorted({e.ip for e in members})
              if ip in attributions]
    contact, escalation = routes(chosen)
    recipient = escalation if kind == C.ESCALATION else contact
    if recipient is None:
        route = "escalation route" if kind == C.ESCALATION else "contact"
        raise NotSendable(f"case {case_id} has no {route} that may be mailed (none known, or opted out)")
    return build_message(case, kind, members, recipient, settings=config.settings,
                         renderer=Renderer(config.templates), now=now)


def send_now(store: NotifyStore, case_id: int, kind: str, exposures: dict[tuple[str, int], Exposure], *,
             config: Config, clock: Callable[[], datetime], transport: Transport | None = None) -> SentNow:
    """Queue the message and run the outbox's delivery (which also sends whatever else is due
    in the queue, as `pacswatch notify` would). NotSendable when it cannot be queued:
    the same follow-up or escalation is already queued or sent (its key exists)."""
    if transport is None:
        transport = SmtpTransport(config.smtp, envelope_from=config.settings.sender.from_addr)  # raises if disabled
    message = plan_now(store, case_id, kind, exposures, config=config, now=clock())
    if not store.enqueue(message):
        raise NotSendable(f"this {kind} of case {case_id} is already queued or sent")
    report = deliver(store, transport, clock=clock, limits=config.settings.limits, backoff=config.settings.backoff,
                     lease=config.settings.lease)
    return SentNow(message, report)
