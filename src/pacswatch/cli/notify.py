"""The owner and notification commands:

    pacswatch attribute [IP ...] [--refresh]        who owns the exposed services, and whom to tell
    pacswatch owners add MATCH --name N --contact E | list | remove ID   the local contacts table
    pacswatch cases [--state S]                     cases, one per owner
    pacswatch case ID                               a case: services, history, messages
    pacswatch case ID --ack NOTE | --close WHY      an owner answered / an operator closes it
    pacswatch notify [--dry-run [--out DIR]]        queue and send notices (sending must be enabled)
    pacswatch export intelmq|csv [--output PATH]    IntelMQ events (JSON lines) or per-owner CSV
    pacswatch config init [-o FILE] | check         a commented sample configuration; check one

"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from pacswatch.cli import options
from pacswatch.cli.options import positive

EXIT_USAGE, EXIT_STORE = 2, 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _common(p: argparse.ArgumentParser) -> None:
    options.database(p, create_dirs=False)
    options.notify_config(p)


def register(sub) -> None:
    from pacswatch.notify.cases import STATES

    p = sub.add_parser("attribute", help="find the owner and contact of exposed services (PTR, RDAP, ASN, "
                       "security.txt, local table)")
    _common(p)
    p.add_argument("ips", nargs="*", metavar="IP", help="addresses (default: all with open findings)")
    p.add_argument("--refresh", action="store_true", help="ignore cached facts")
    p.add_argument("--json", action="store_true", help="one JSON object per address, facts included")
    p.add_argument("--resolver", action="append", default=[], metavar="IP[:PORT]",
                   help="DNS resolver for PTR/A lookups (overrides the configuration; repeatable)")
    p.add_argument("--rdap-bootstrap", metavar="URL", help="RDAP bootstrap base URL (default: IANA's)")
    p.set_defaults(handler=cmd_attribute)

    owners = sub.add_parser("owners", help="the local contacts table: CIDR or domain -> owner, contacts")
    actions = owners.add_subparsers(dest="owners_command", required=True)
    add = actions.add_parser("add", help="add an entry (it takes precedence over public sources)")
    _common(add)
    add.add_argument("match", metavar="CIDR|DOMAIN", help="the addresses (CIDR) or PTR domain this owner runs")
    add.add_argument("--name", required=True, help="the owner's name, as notices greet it")
    add.add_argument("--contact", action="append", required=True, help="e-mail address; repeatable, first preferred")
    add.add_argument("--escalation", action="append", default=[], help="who to tell when the owner does not act")
    add.add_argument("--language", help="language of the notices to this owner (e.g. en)")
    add.add_argument("--notes", help="free text kept with the entry")
    add.set_defaults(handler=cmd_owners)
    listing = actions.add_parser("list", help="show the table")
    _common(listing)
    listing.set_defaults(handler=cmd_owners)
    remove = actions.add_parser("remove", help="remove an entry")
    _common(remove)
    remove.add_argument("id", type=positive("owner ID"), metavar="ID", help="the entry's ID (see owners list)")
    remove.set_defaults(handler=cmd_owners)

    cases = sub.add_parser("cases", help="cases (one per owner) and their states")
    _common(cases)
    cases.add_argument("--state", action="append", default=[], choices=STATES,
                       help="only cases in this state; repeatable")
    cases.add_argument("--json", action="store_true", help="one JSON object per case")
    cases.set_defaults(handler=cmd_cases)

    case = sub.add_parser("case", help="one case: services, history, messages")
    _common(case)
    case.add_argument("id", type=positive("case ID"), metavar="ID", help="the case's ID (see cases)")
    case.add_argument("--ack", metavar="NOTE", help="the owner acknowledged (stops escalation)")
    case.add_argument("--close", metavar="WHY", help="close the case")
    case.add_argument("--json", action="store_true", help="the case, its history and messages as JSON")
    case.set_defaults(handler=cmd_case)

    notify = sub.add_parser("notify", help="queue and send notices; --dry-run writes them to a folder instead")
    _common(notify)
    notify.add_argument("--dry-run", action="store_true", help="write .eml files, send nothing")
    notify.add_argument("--out", metavar="DIR", help="folder for --dry-run (default: [notify] dry_run_dir)")
    notify.set_defaults(handler=cmd_notify)

    export = sub.add_parser("export", help="IntelMQ events (JSON lines) or per-owner CSV of exposed services")
    _common(export)
    export.add_argument("format", choices=("intelmq", "csv"), help="intelmq: IntelMQ events, one JSON per "
                        "line; csv: exposed services per owner")
    export.add_argument("--output", "-o", metavar="PATH", help="file (intelmq) or folder (csv: one file per "
                        "owner); default: standard output")
    export.add_argument("--all", action="store_true", help="fixed services too, not only open ones")
    export.set_defaults(handler=cmd_export)

    config = sub.add_parser("config", help="the attribution and notification configuration (TOML)")
    config_actions = config.add_subparsers(dest="config_command", required=True)
    init = config_actions.add_parser("init", help="write a commented sample configuration")
    init.add_argument("--output", "-o", metavar="FILE", help="file to create (default: standard output); "
                      "an existing file is not overwritten")
    init.set_defaults(handler=cmd_config)
    check = config_actions.add_parser("check", help="read a configuration and say what is wrong with it")
    check.add_argument("--config", metavar="FILE", help="the file (default $PACSWATCH_NOTIFY_CONFIG)")
    check.set_defaults(handler=cmd_config)


def _with_store(command: Callable[[argparse.Namespace, Any, Any], int]) -> Callable[[argparse.Namespace], int]:
    """A handler that runs `command(args, engine, config)` with the database and the notify
    configuration open, and says what went wrong in one line: exit 1 for the database, 2 for
    the rest (a bad configuration, an address, a file)."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        # The store (and SQLAlchemy with it) is imported here, not by building the parser.
        from pacswatch.notify import config as configuration
        from pacswatch.store.errors import StoreError
        from pacswatch.store.repository import Repository

        try:
            config = configuration.load(args.config)
            with Repository.open(args.database) as repo:
                return command(args, repo.engine, config)
        except StoreError as exc:
            print(f"pacswatch {args.command}: {exc}", file=sys.stderr)
            return EXIT_STORE
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"pacswatch {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


@_with_store
def cmd_attribute(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.attribution.facts import utcnow
    from pacswatch.campaign.scope import contact_check
    from pacswatch.notify import cli_views as views
    from pacswatch.notify import service
    from pacswatch.notify.store import NotifyStore
    from pacswatch.store.repository import Repository

    config = _override_attribution(config, args)
    # The campaign's scope check, passed down: notify sits below the campaign.
    results = service.attribute(engine, config, ips=args.ips or None, refresh=args.refresh, clock=utcnow,
                                may_contact=contact_check(Repository(engine)))
    if not results:
        print("no addresses to attribute (no open findings)", file=sys.stderr)
    views.print_attributions(results, NotifyStore(engine), as_json=args.json)
    return 0


@_with_store
def cmd_owners(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.attribution.facts import utcnow
    from pacswatch.notify import cli_views as views
    from pacswatch.notify.store import NotifyStore

    store = NotifyStore(engine)
    if args.owners_command == "add":
        if problem := _owner_problem(args):
            print(f"pacswatch owners add: {problem}", file=sys.stderr)
            return EXIT_USAGE
        from pacswatch.attribution.local import LocalOwner

        entry = LocalOwner(args.match, args.name, tuple(args.contact), args.language, args.notes,
                           escalation=tuple(args.escalation))
        return views.add_owner(store, entry, utcnow())
    if args.owners_command == "remove":
        return views.remove_owner(store, args.id)
    return views.list_owners(store)


@_with_store
def cmd_cases(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.notify import cli_views as views
    from pacswatch.notify.store import NotifyStore

    return views.cases(NotifyStore(engine), args.state, as_json=args.json)


@_with_store
def cmd_case(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.attribution.facts import utcnow
    from pacswatch.notify import cli_views as views
    from pacswatch.notify.store import NotifyStore

    return views.case(NotifyStore(engine), args.id, utcnow(), ack=args.ack, close=args.close, as_json=args.json)


@_with_store
def cmd_notify(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.attribution.facts import utcnow
    from pacswatch.notify import cli_views as views
    from pacswatch.notify import service

    try:
        result = service.notify(engine, config, dry_run=args.dry_run, out_dir=args.out, clock=utcnow)
    except KeyboardInterrupt:  # Ctrl-C: what happened to the messages, not a stack trace
        minutes = int(config.settings.lease.total_seconds() // 60)
        print("pacswatch notify: interrupted; every message sent is recorded, and one being sent is tried "
              f"again by a pass at least {minutes} min from now (pacswatch notify)", file=sys.stderr)
        return EXIT_INTERRUPTED
    views.print_notify(result, dry_run=args.dry_run)
    return 0 if result.delivery is None or not result.delivery.failed else 1


@_with_store
def cmd_export(args: argparse.Namespace, engine, config) -> int:
    from pacswatch.attribution.facts import utcnow
    from pacswatch.notify import cli_views as views
    from pacswatch.notify.store import NotifyStore

    # "-" is standard output, as everywhere, not a file named "-".
    return views.export(engine, NotifyStore(engine), utcnow(), kind=args.format,
                        output=None if args.output == "-" else args.output, fixed_too=args.all,
                        threshold=config.settings.deception_threshold)


def _override_attribution(config, args):
    from dataclasses import replace

    attribution = config.attribution
    if args.resolver:
        attribution = replace(attribution, resolver=replace(attribution.resolver, nameservers=tuple(args.resolver)))
    if args.rdap_bootstrap:
        attribution = replace(attribution, rdap=replace(attribution.rdap, bootstrap_url=args.rdap_bootstrap))
    return replace(config, attribution=attribution)


def _owner_problem(args) -> str | None:
    """What makes an `owners add` entry unusable, or None. Its name is a notice's greeting and
    its contacts become To headers: a line break there would end the header block, a comma
    would add a recipient. The table's own check (attribution/local.validate) takes each contact
    as exactly one plain address; here, no control character in the other fields either."""
    from pacswatch.attribution.local import validate
    from pacswatch.mailaddr import has_control
    from pacswatch.text import clean

    problems = validate(args.match, [*args.contact, *args.escalation])
    for option, value in (("--name", args.name), ("--language", args.language), ("--notes", args.notes)):
        if value is not None and has_control(value):
            problems.append(f'{option} "{clean(value)}" contains a control character or a line break')
    return "; ".join(problems) or None


def cmd_config(args: argparse.Namespace) -> int:
    from pacswatch.notify import config as configuration
    from pacswatch.notify import configpath
    from pacswatch.safefile import write_atomic

    if args.config_command == "init":
        text = configuration.sample()
        if not args.output or args.output == "-":
            sys.stdout.write(text)
            return 0
        if os.path.lexists(args.output):
            print(f"pacswatch config init: {args.output} exists; not overwritten", file=sys.stderr)
            return EXIT_USAGE
        try:
            write_atomic(args.output, text, mode=0o600)
        except OSError as exc:
            print(f"pacswatch config init: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {args.output}: edit [sender] and [smtp], then pacswatch config check --config {args.output}")
        return 0
    path = configpath.named(args.config)
    if path is None:
        print("pacswatch config check: no configuration named (--config FILE or $PACSWATCH_NOTIFY_CONFIG)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        config = configuration.load(path)
    except ValueError as exc:
        print(f"pacswatch config check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sending = "enabled" if config.smtp.enabled else "disabled (notify --dry-run only)"
    print(f"{path}: valid; sending {sending}; sender {config.settings.sender.from_addr}")
    return 0
