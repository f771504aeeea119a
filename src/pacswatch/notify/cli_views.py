"""What the owner and notification commands print (cli/notify.py parses, this shows).

Names, contacts, reasons and errors come from owners' infrastructure (RDAP, PTR, security.txt),
from SMTP servers or from the operator: every one is cleaned (`text.clean`) on its way to the
terminal, and tables get them as `rich.text.Text`, never as markup.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime

from rich.table import Table

from pacswatch.attribution.local import LocalOwner, validate
from pacswatch.notify import cases as C
from pacswatch.notify.csvexport import exposures_csv
from pacswatch.notify.exports import intelmq_lines, per_owner_csv, write_per_owner
from pacswatch.notify.store import NotifyStore
from pacswatch.output import shown, stdout_console
from pacswatch.text import clean


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "-"


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """A table on stdout like the campaign commands' (colour on a terminal, wide in a pipe)."""
    table = Table(title=title)
    for column in columns:  # what identifies a row is never wrapped; a long address folds, never cut
        table.add_column(column, no_wrap=column in ("id", "address", "state"), overflow="fold")
    for row in rows:
        table.add_row(*(shown(cell) for cell in row))
    stdout_console().print(table)


def print_attributions(results: dict, store: NotifyStore, *, as_json: bool) -> None:
    if as_json:
        stored = store.attributions(list(results))
        for ip, (a, changed) in results.items():
            print(json.dumps({**a.to_dict(), "changed": changed, "facts": stored[ip]["facts"]}, default=str))
        return
    rows = [(ip, a.owner_name, a.contact.address if a.contact else "-", f"{a.confidence:.2f}",
             a.escalation.address if a.escalation else "-", a.reasons[0] if a.reasons else "")
            for ip, (a, _changed) in results.items()]
    if rows:
        _print_table("Owners", ("address", "owner", "contact", "confidence", "escalation", "why"), rows)


def add_owner(store: NotifyStore, entry: LocalOwner, now: datetime) -> int:
    problems = validate(entry.match, [*entry.contacts, *entry.escalation])
    if problems:
        print("pacswatch owners add: " + "; ".join(problems), file=sys.stderr)
        return 2
    print(f"owner {store.add_owner(entry, now)} added: {clean(entry.match)} -> {clean(entry.name)}")
    return 0


def remove_owner(store: NotifyStore, owner_id: int) -> int:
    if not store.remove_owner(owner_id):
        print(f"pacswatch owners remove: no owner {owner_id}", file=sys.stderr)
        return 1
    print(f"owner {owner_id} removed")
    return 0


def list_owners(store: NotifyStore) -> int:
    rows = [(o.id, o.match, o.name, ", ".join(o.contacts), ", ".join(o.escalation) or "-", o.language or "-",
             o.notes or "") for o in store.owners()]
    if not rows:
        print("no owners")
        return 0
    _print_table("Local contacts", ("id", "match", "name", "contacts", "escalation", "language", "notes"), rows)
    return 0


def cases(store: NotifyStore, states: list[str], *, as_json: bool) -> int:
    items = store.cases(states or None)
    opted = store.opted_out_services()  # case id -> its opted-out services
    if as_json:
        for c in items:
            print(json.dumps({**asdict(c), "services": store.services_of(c.stored_id),
                              "opted_out": opted.get(c.stored_id, [])}, default=str))
        return 0
    if not items:
        print("no cases")
        return 0
    rows = [(c.stored_id, c.state, c.owner_name, len(store.services_of(c.stored_id)), len(opted.get(c.stored_id, [])),
             _when(c.opened_at), _when(c.notified_at), c.followups, _when(c.updated_at)) for c in items]
    _print_table("Cases", ("id", "state", "owner", "services", "opted out", "opened", "notified", "follow-ups",
                           "updated"), rows)
    return 0


def case(store: NotifyStore, case_id: int, now: datetime, *, ack: str | None = None, close: str | None = None,
         as_json: bool = False) -> int:
    """One case, after the owner's acknowledgement (`ack`) or its closing (`close`) when given."""
    item = store.case(case_id)
    if item is None:
        print(f"pacswatch case: no case {case_id}", file=sys.stderr)
        return 1
    if ack or close:
        try:
            updated, t = C.acknowledge(item, now, ack) if ack else C.close(item, now, close or "")
        except C.TransitionError as exc:
            print(f"pacswatch case: {exc}", file=sys.stderr)
            return 1
        store.save_case(updated, (t,))
        item = updated
    history = store.history(item.stored_id)
    messages = store.messages(case_id=item.id)
    opted = store.opted_out_services().get(item.stored_id, [])
    if as_json:
        print(json.dumps({**asdict(item), "services": store.services_of(item.stored_id), "opted_out": opted,
                          "history": history,
                          "messages": [{k: v for k, v in asdict(m).items() if k != "raw"} for m in messages]},
                         default=str, indent=2))
        return 0
    print(f"case {item.id}: {clean(item.owner_name)} ({clean(item.owner_key)}), {item.state}, round {item.round}")
    print("services: " + (", ".join(f"{clean(ip)}:{port}" + (" (opted out)" if (ip, port) in opted else "")
                                    for ip, port in store.services_of(item.stored_id)) or "none"))
    print("\nhistory:")
    for e in history:
        move = f"{e['from_state'] or '-'} -> {e['to_state']}" if e["to_state"] else e["kind"]
        print(f"  {_when(e['at'])}  {clean(move)}: {clean(e['why'], limit=1000)}")
    if messages:
        print("\nmessages:")
        for m in messages:
            sent = f"  sent {_when(m.sent_at)}" if m.sent_at else ""
            error = f"  last error: {clean(m.last_error)}" if m.last_error and m.state != "sent" else ""
            print(f"  {m.kind:<10} {clean(m.recipient):<32} {m.state:<8} attempts {m.attempts}{sent}{error}")
    return 0


def print_notify(result, *, dry_run: bool) -> None:
    plan = result.plan
    print(f"cases: {len(plan.created)} new; {len(plan.transitions)} state change(s)")
    for case_id, t in plan.transitions:
        print(f"  case {case_id}: {t.from_state} -> {t.to_state}: {clean(t.why, limit=1000)}")
    if plan.no_contact:
        print(f"no contact known for case(s) {', '.join(map(str, plan.no_contact))}: "
              "add one with `pacswatch owners add`")
    if plan.unattributed:
        print(f"{plan.unattributed} exposed service(s) not attributed yet: run `pacswatch attribute`")
    for case_id, why in plan.suppressed:
        print(f"case {case_id}: no notice: {clean(why, limit=1000)}")
    traps = getattr(plan, "traps", ())
    if traps:  # kept and listed in `pacswatch findings`; `findings mark ID --real` brings one back
        print(f"skipped {len(traps)} finding(s) judged traps (honeypot, tarpit, accepts-all, demo), not notified:")
        for ip, port, verdict, _, why in traps:
            print(f"  {clean(ip)}:{port} {clean(verdict)}: {clean(why, limit=1000)}")
    triaged = getattr(plan, "triaged", ())
    if triaged:  # kept and rescanned (a suppressed one from its date on); the dashboard clears a verdict
        print(f"skipped {len(triaged)} finding(s) marked a false positive or suppressed, not notified:")
        for ip, port, verdict, why in triaged:
            print(f"  {clean(ip)}:{port} {clean(verdict)}: {clean(why, limit=1000)}")
    for case_id, why in getattr(plan, "bad_recipients", ()):
        print(f"case {case_id}: recipient skipped: {clean(why, limit=1000)}")
    for key, why in plan.cancelled:
        print(f"message {key[:12]} {'would be ' if dry_run else ''}cancelled: {clean(why, limit=1000)}")
    if dry_run:
        print(f"dry run: {len(result.written)} message(s) written, nothing sent:")
        for path in result.written:
            print(f"  {clean(path, limit=4096)}")
        return
    d = result.delivery
    print(f"queued {len(plan.queued)}; sent {len(d.sent)}, retrying {len(d.retrying)}, failed {len(d.failed)}, "
          f"deferred {len(d.deferred)}")
    for key, error in d.errors.items():  # an SMTP server's words
        print(f"  {clean(key[:12])}: {clean(error, limit=1000)}")
    # Nothing sends a message later by itself: say when the next `pacswatch notify` will try it.
    for m, next_try in getattr(result, "waiting", ()):
        if m.state == "sending":  # claimed by a pass that stopped (Ctrl-C, a crash) before it was told the outcome
            print(f"in flight: case {m.case_id} {m.kind} to {clean(m.recipient)} since {_when(m.claimed_at)} UTC, "
                  f"by a pass that did not finish; next try from {_when(next_try)} UTC (run pacswatch notify "
                  "again then)")
            continue
        why = f" after {m.attempts} failed attempt(s)" if m.attempts else ""
        why += f" ({clean(m.last_error, limit=300)})" if m.last_error else ""
        print(f"waiting: case {m.case_id} {m.kind} to {clean(m.recipient)}{why}; next try from "
              f"{_when(next_try)} UTC (run pacswatch notify again then)")


def export(engine, store: NotifyStore, now: datetime, *, kind: str, output: str | None, fixed_too: bool,
           threshold: float) -> int:
    """`kind`: intelmq (events, one JSON per line, to the file `output`) or csv (a file per owner
    in the folder `output`); None: standard output. `fixed_too`: fixed services as well.

    Traps (a deception verdict at or above `threshold`, or marked a honeypot) stay out of the
    IntelMQ feed, with a count on stderr: other CERTs act on it as vulnerable services. The CSV
    keeps them with a `deception` column saying why: it is the operator's working list, where a
    trap left out could not be reviewed or marked real (`findings mark`), and a spreadsheet
    filters on the column."""
    from pacswatch.notify.workflow import load_exposures, split_traps
    from pacswatch.store.repository import Repository

    rows = Repository(engine).findings()
    _, traps = split_traps(rows, threshold)
    marks = {(ip, port): f"{verdict} {confidence:.2f}: {why}" for ip, port, verdict, confidence, why in traps}
    items = [e for _, e in sorted(load_exposures(engine, rows).items()) if fixed_too or e.exposed]
    attributions = store.attributions()
    if kind == "intelmq":
        feed = [e for e in items if (e.ip, e.port) not in marks]
        if len(feed) < len(items):
            print(f"{len(items) - len(feed)} finding(s) judged traps left out of the IntelMQ feed (deception "
                  f"verdict >= [notify] deception_threshold {threshold:g}, or marked a honeypot): see "
                  "pacswatch findings", file=sys.stderr)
        text = intelmq_lines(feed, attributions, now=now)
        if output:
            from pacswatch.safefile import write_atomic  # never through a link planted at the path

            write_atomic(output, text)
        else:
            sys.stdout.write(text)
        return 0
    tables = per_owner_csv(items, attributions, marks)
    if not tables:  # nothing exposed: on stdout the header alone, so that a pipeline still parses it
        if output:
            print("no exposed services: no file written", file=sys.stderr)
        else:
            sys.stdout.write(exposures_csv([], extra={"owner": "", "contact": ""}, traps={}))
        return 0
    if output:
        for path in write_per_owner(output, tables):
            print(clean(path, limit=4096))
    else:
        for i, text in enumerate(tables.values()):
            sys.stdout.write(text if i == 0 else text.split("\r\n", 1)[1])
    return 0
