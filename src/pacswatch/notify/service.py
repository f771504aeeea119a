"""The operations behind the commands, for the CLI and for callers such as the scan runner
("attribute automatically after scans"): attribute open findings, run a notification pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from pacswatch.attribution.attributor import Attributor
from pacswatch.attribution.facts import utcnow
from pacswatch.findings.triage import split_triaged
from pacswatch.notify.cases import OPEN_STATES
from pacswatch.notify.config import Config
from pacswatch.notify.delivery import DeliveryReport, deliver
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.outbox import OutboxMessage
from pacswatch.notify.render import Renderer
from pacswatch.notify.smtp import DryRunTransport, SmtpTransport, Transport
from pacswatch.notify.store import VALUES_PER_QUERY, NotifyStore
from pacswatch.notify.workflow import Planned, load_exposures, open_cases, plan_pass, split_traps


def findings_exposures(engine: Engine, *, statuses: Iterable[str] = (), traps_at: float | None = None,
                       ips: Iterable[str] | None = None) -> dict[tuple[str, int], Exposure]:
    """Findings as Exposures (those at `ips` only, when given); with `traps_at` (a deception
    threshold), without the traps and without what a person marked a false positive or
    suppressed (findings/triage.py)."""
    from pacswatch.store.repository import Repository

    repo = Repository(engine)
    if ips is None:
        rows = repo.findings(statuses=list(statuses))
    else:
        wanted = sorted(set(ips))
        rows = [row for start in range(0, len(wanted), VALUES_PER_QUERY)
                for row in repo.findings(statuses=list(statuses), ips=wanted[start:start + VALUES_PER_QUERY])]
    if traps_at is not None:
        rows, _ = split_traps(rows, traps_at)
        rows, _ = split_triaged(rows, repo.triage(), utcnow())
    return load_exposures(engine, rows)


def close_opted_out(engine: Engine, at: datetime) -> list[dict]:
    """Close the findings under the opt-out list as `opted-out` (the campaign's lifecycle, kept
    in the finding's history), with a line in the history of the case that holds each. Run by
    `optout add` and again by every `attribute` and `notify` (idempotent), so that an opt-out
    entered any other way is honoured too. Returns the findings closed now."""
    from pacswatch.store.repository import Repository

    repo = Repository(engine)
    entries = repo.optouts()
    if not entries:
        return []
    closed = repo.close_opted_out([e["cidr"] for e in entries], at=at)
    store = NotifyStore(engine)
    listed, where = store.optouts(), store.case_of_services()
    for f in sorted(closed, key=lambda f: (f["ip"], f["port"])):  # the case's history reads in order
        case_id = where.get((f["ip"], f["port"]))
        if case_id is not None:
            endpoint = f"[{f['ip']}]:{f['port']}" if ":" in f["ip"] else f"{f['ip']}:{f['port']}"
            store.note(case_id, at, f"{endpoint} opted out ({listed.address_reason(f['ip'])}): finding closed as "
                                    "opted-out, named in no further notice")
    return closed


async def attribute_async(engine: Engine, config: Config, *, may_contact: Callable[[str], str | None],
                          ips: Iterable[str] | None = None, refresh: bool = False,
                          clock: Callable[[], datetime] = utcnow, deadline: float | None = None,
                          **attributor_kwargs) -> dict:
    """Attribute `ips` (default: every address with an open or reopened finding); store each
    decision with its facts, and open or update the owners' cases (state new: see
    workflow.open_cases). Returns ip -> (Attribution, changed).

    `may_contact(address)` says why an address must not be connected to, or None: the caller
    passes the campaign's check (campaign.scope.contact_check: blocklist, opt-outs, scope), which
    notify does not import, being below the campaign. It has no default, so that no caller
    fetches a security.txt without a scope."""
    store = NotifyStore(engine)
    close_opted_out(engine, clock())  # an opted-out address is neither looked up nor put in a case
    if ips is None:
        ips = sorted({ip for ip, _ in findings_exposures(engine, statuses=("open", "reopened"))})
    # A security.txt is fetched only from an address `may_contact` allows, asked when the fetch
    # is made (attributor.py).
    async with Attributor(config.attribution, cache=store, local=store.owners(), clock=clock,
                          may_contact=may_contact, **attributor_kwargs) as attributor:
        results = await attributor.attribute_many(list(ips), refresh=refresh, deadline=deadline)
    at = clock()
    ordered = sorted(results.items())
    changed = store.save_attributions([decision for _, decision in ordered], at)
    # Cases exist from attribution on, so `pacswatch cases` after a scan shows its owners; a trap
    # (deception.py) opens none: no notice will name it. open_cases acts only on the services
    # of attributed addresses (put in their owner's case) and on those already in a case
    # (reviewed): their findings are all it is given, not every finding in the database, most
    # of which, right after a scan, are at addresses not attributed yet (bench/README.md).
    involved = set(store.attributions()) | {ip for ip, _ in store.case_of_services()}
    open_cases(store, findings_exposures(engine, traps_at=config.settings.deception_threshold, ips=involved),
               now=at, policy=config.settings.policy)
    return {ip: (decision[0], was) for (ip, decision), was in zip(ordered, changed)}


def attribute(engine: Engine, config: Config, **kwargs) -> dict:
    return asyncio.run(attribute_async(engine, config, **kwargs))


def attribute_after_scan(engine: Engine, config: Config, records, *,
                         may_contact: Callable[[str], str | None]) -> str | None:
    """Attribute the addresses a finished scan found exposed (issue: "automatically after
    scans"); returns a line for the user, or None when there was nothing to do. `may_contact`
    as for attribute_async."""
    cfg = config.attribution
    ips = list(dict.fromkeys(r.ip for r in records if r.severity))
    if not cfg.after_scans or not ips:
        return None
    todo = ips[: cfg.after_scans_max]
    # Bounded as a whole: what the deadline leaves undone (with the rest) is `attribute`'s.
    done = attribute(engine, config, may_contact=may_contact, ips=todo, deadline=cfg.after_scans_deadline_s)
    left = len(ips) - len(done)
    more = f"; {left} more: pacswatch attribute" if left > 0 else ""
    no_dns = "" if (cfg.resolver.nameservers or cfg.resolver.system) else \
        " without DNS (no [attribution] resolver configured: PTR and security.txt skipped)"
    cases = len(NotifyStore(engine).cases(list(OPEN_STATES)))
    return (f"attributed {len(done)} exposed addresses{no_dns}; {cases} open case(s): pacswatch cases, "
            f"pacswatch case ID{more}")


@dataclass
class NotifyResult:
    plan: Planned
    delivery: DeliveryReport | None
    written: list[Path]
    # Not sent after this pass, each with when the next pass may try it: pending ones when their
    # retry is due, one left 'sending' by an interrupted pass when its lease ends.
    waiting: list[tuple[OutboxMessage, datetime]] = field(default_factory=list)


def notify(engine: Engine, config: Config, *, dry_run: bool, out_dir: str | None = None,
           clock: Callable[[], datetime] = utcnow, transport: Transport | None = None) -> NotifyResult:
    """One pass: cases from findings, reviews, messages. A dry run writes the messages it would
    send (and those already waiting) as .eml files and changes no message or notice state;
    otherwise the queue is delivered through SMTP, which must be enabled in the configuration."""
    store = NotifyStore(engine)
    if not dry_run and transport is None:
        transport = SmtpTransport(config.smtp, envelope_from=config.settings.sender.from_addr)  # raises if disabled
    from pacswatch.store.repository import Repository

    close_opted_out(engine, clock())
    # Traps (honeypots, tarpits, hosts that accept everything) are kept and listed, never notified.
    repo = Repository(engine)
    rows, traps = split_traps(repo.findings(), config.settings.deception_threshold)
    # So is what a person marked a false positive, or suppressed until a date still ahead.
    now = clock()
    rows, triaged = split_triaged(rows, repo.triage(), now)
    exposures = load_exposures(engine, rows)
    plan = plan_pass(store, exposures, now=now, settings=config.settings, renderer=Renderer(config.templates),
                     dry_run=dry_run)
    plan.traps, plan.triaged = traps, triaged
    if dry_run:
        writer = DryRunTransport(out_dir or config.dry_run_dir)
        listed = store.optouts()
        waiting: dict[str, OutboxMessage] = {}
        for msg in store.messages(states=["pending"]):
            why = store.veto(msg, listed)
            if why is None:
                waiting[msg.key] = msg
            else:  # what the real pass cancels (and queues again as planned); a dry run only tells
                plan.cancelled.append((msg.key, why))
        for msg in [*waiting.values(), *(m for m in plan.messages if m.key not in waiting)]:
            writer.send(msg)
        return NotifyResult(plan, None, writer.written)
    # The store checks the opt-out list again as it claims each message (store.claim).
    assert transport is not None  # made above when not given, for a real pass
    report = deliver(store, transport, clock=clock, limits=config.settings.limits, backoff=config.settings.backoff,
                     lease=config.settings.lease)
    plan.cancelled += store.cancelled
    lease = config.settings.lease
    queued = [(m, m.claimed_at + lease if m.state == "sending" and m.claimed_at else m.next_attempt_at)
              for m in store.messages(states=["pending", "sending"])]
    return NotifyResult(plan, report, [], queued)
