"""Who may be scanned: the opt-out list and the installation's scope.

    pacswatch optout add CIDR --contact WHO | list | remove ID
    pacswatch scope add CIDR | list | remove ID
"""

from __future__ import annotations

import argparse
import sys
from pacswatch.cli import options
from pacswatch.cli.db import reports_store_errors
from pacswatch.cli.options import positive

OPTOUT_COLUMNS = ("id", "cidr", "contact", "requested_at", "added_at", "added_by", "note")
SCOPE_COLUMNS = ("id", "cidr", "added_at", "added_by", "note")


def register(sub) -> None:
    for name, text in (("optout", "owners who asked not to be scanned: never contacted"),
                       ("scope", "networks this installation is authorised to scan")):
        parser = sub.add_parser(name, help=text)
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="add a network")
        add.add_argument("cidr", metavar="CIDR", help="an address or a network, e.g. 198.51.100.0/24")
        if name == "optout":
            add.add_argument("--contact", required=True, help="who asked (e-mail, ticket)")
            add.add_argument("--requested", metavar="DATE", help="when they asked (default: now)")
        add.add_argument("--note", help="free text kept with the entry")
        options.database(add)
        add.set_defaults(handler=cmd_add)
        listing = actions.add_parser("list", help="show the entries")
        options.database(listing)
        options.table_format(listing)
        listing.set_defaults(handler=cmd_list)
        remove = actions.add_parser("remove", help="remove an entry")
        remove.add_argument("entry", type=positive("entry ID"), metavar="ID", help="the entry's ID (see list)")
        options.database(remove)
        remove.set_defaults(handler=cmd_remove)


@reports_store_errors
def cmd_add(args: argparse.Namespace) -> int:
    from pacswatch.campaign.scope import normalize_network
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:
        if args.command == "optout":  # its findings close now (history kept); notify checks the list again before sending
            from pacswatch.campaign.optouts import add_optout

            requested = options.moment(args.requested) if args.requested else None
            added = add_optout(repo, args.cidr, args.contact, requested_at=requested, note=args.note)
            print(f"{args.command} entry {added.entry}: {added.cidr}")
            print(f"{len(added.closed)} finding(s) closed as opted-out; no notice will name them or go to "
                  f"{args.contact}")
            return 0
        cidr = normalize_network(args.cidr)
        print(f"{args.command} entry {repo.add_scope(cidr, args.note)}: {cidr}")
    return 0


@reports_store_errors
def cmd_remove(args: argparse.Namespace) -> int:
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:
        removed = repo.remove_optout(args.entry) if args.command == "optout" else repo.remove_scope(args.entry)
    if not removed:
        raise ValueError(f"there is no {args.command} entry {args.entry}")
    print(f"{args.command} entry {args.entry} removed")
    return 0


@reports_store_errors
def cmd_list(args: argparse.Namespace) -> int:
    from pacswatch.campaign import report
    from pacswatch.output import stdout_console
    from pacswatch.store.repository import Repository

    optout = args.command == "optout"
    with Repository.open(args.database) as repo:
        rows = repo.optouts() if optout else repo.scope_entries()
    if args.format == "json":
        report.write_json(sys.stdout, rows)
    else:
        stdout_console().print(report.entries_table("Opt-out list" if optout else "Scope", rows,
                                                    OPTOUT_COLUMNS if optout else SCOPE_COLUMNS))
    return 0
