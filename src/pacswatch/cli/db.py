"""`pacswatch db upgrade|info|check`, and how every command that opens the database reports a
store failure (`reports_store_errors`)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from pacswatch.cli import options

EXIT_STORE = 1

Handler = Callable[[argparse.Namespace], int]


def reports_store_errors(handler: Handler) -> Handler:
    """`handler`, with a failure of the database (it does not open, it is damaged, its schema
    is too new) said in one line and exit 1. The store (and SQLAlchemy with it) is imported when
    the command runs, not by building the parser: `--help` and usage errors stay quick."""
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from pacswatch.output import error_line, stderr_console
        from pacswatch.store.errors import StoreError

        try:
            return handler(args)
        except StoreError as exc:
            stderr_console().print(error_line(f"pacswatch {args.command}:", exc), highlight=False, soft_wrap=True)
            return EXIT_STORE

    return run


def register(sub) -> None:
    db = sub.add_parser("db", help="the database: upgrade (migrate), info, check")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text, handler in (
            ("upgrade", "migrate a PostgreSQL database to this version's schema (an SQLite file "
                        "is migrated when opened, a copy kept beside it)", cmd_info),
            ("info", "where the database is and its schema revision", cmd_info),
            ("check", "read the whole database and report damage and broken links (writes nothing); "
                      "exit 1 when something is wrong", cmd_check)):
        command = db_sub.add_parser(name, help=text)
        options.database(command)
        command.set_defaults(handler=handler)
    db_sub.choices["check"].add_argument("--quick", action="store_true",
                                         help="SQLite: quick_check instead of the full integrity_check")


@reports_store_errors
def cmd_info(args: argparse.Namespace) -> int:
    """`db info`, and `db upgrade` (which migrates first)."""
    from pacswatch.store.engine import describe
    from pacswatch.store.repository import Repository

    repo = Repository.open(args.database, upgrade=args.db_command == "upgrade")
    try:
        info = describe(repo.engine)
    finally:
        repo.close()
    for key in ("url", "backend", "revision", "state"):
        print(f"{key}: {info[key]}")
    return 0


@reports_store_errors
def cmd_check(args: argparse.Namespace) -> int:
    """`pacswatch db check`: 0 when sound, 1 when something is wrong (a database that does not
    even open is reported like every command's, with the same exit code)."""
    from pacswatch.campaign.scanrun import STALE, shown_status
    from pacswatch.store.check import check_database
    from pacswatch.store.repository import Repository

    with Repository.open(args.database) as repo:  # stalled as `scans` says it: the same scan, the same word
        report = check_database(repo, stale=STALE, quick=args.quick,
                                stalled=lambda scan: shown_status(scan) == "stalled")
        url = repo.engine.url.render_as_string(hide_password=True)
    print(f"checked {url}: {', '.join(report.checked)}")
    for problem in report.problems:
        print(f"problem: {problem}")
        for example in problem.examples:
            print(f"  {example}")
    for note in report.notes:
        print(f"note: {note}")
    if report.sound:
        print("sound")
    else:
        salvage = " (SQLite: `sqlite3 FILE .recover` salvages what is readable)" if url.startswith("sqlite") else ""
        print(f"{len(report.problems)} problem(s): restore the database from a backup{salvage}")
    return 0 if report.sound else EXIT_STORE
