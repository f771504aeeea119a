"""The command line: `pacswatch COMMAND ...`.

One module per command group, and one module of the options several commands share:

    options.py    every shared option, its help and default written once; the argparse types
    scan.py       scan, probe
    lab.py        lab, demo
    schema.py     schema
    db.py         db upgrade|info|check
    campaign.py   run, findings, history, stats, scans
    deception.py  findings mark (under campaign's findings)
    scope.py      optout, scope
    distributed.py  worker, workers, shards; `scan --broker` (distributed scans on Celery)
    notify.py     attribute, owners, cases, case, notify, export, config
    web.py        serve, users (the dashboard)

The command-module contract. A command-group module exposes

    def register(sub) -> None

where `sub` is what `parser.add_subparsers(...)` returned. It adds its parsers to `sub` and gives
each runnable one a handler, `parser.set_defaults(handler=some_function)`, where

    def some_function(args: argparse.Namespace) -> int

runs the command and returns its exit code. `main()` parses, then calls `args.handler(args)`
for every command: there is no dispatcher to extend. The `Namespace` stays in this package:
a handler turns it into the settings the layers below take (typed, frozen dataclasses) and
passes those down. A module is added to the command line by one line in `COMMAND_GROUPS`.
`register` imports nothing heavy (a handler imports what its command needs when it runs), and
an option another command also takes comes from options.py rather than being declared again.

main() turns what a command raises into one line on stderr: a bad target, port list or value
(ValueError, OSError) exits 2. Ctrl-C is each command's to handle (it knows what was left
undone) and exits 130. What only one command needs (the probes, the store, rich's tables) is
imported inside that command, so that `--help`, a usage error or `schema` does not load the
scan's whole stack.
"""

from __future__ import annotations

import argparse
import sys

from pacswatch import __version__
from pacswatch.cli import campaign, db, deception, distributed, lab, notify, scan, schema, scope, web
from pacswatch.targets import PortError, TargetError

EXIT_USAGE = 2

# In the order `pacswatch --help` lists their commands (deception adds to campaign's findings).
COMMAND_GROUPS = (scan, lab, schema, db, campaign, deception, scope, distributed, notify, web)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacswatch", description=(
        "Find exposed DICOM/PACS servers in ranges you are authorised to scan, and measure what "
        "they expose without taking patient data."))
    parser.add_argument("--version", action="version", version=f"pacswatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing: --help and usage errors do without it.
    from pacswatch.output import error_line, stderr_console

    try:
        if getattr(args, "create_dirs", False):
            from pacswatch.store.engine import create_database_directory

            create_database_directory(args.database)
        return args.handler(args)
    except (TargetError, PortError, ValueError, OSError) as exc:
        stderr_console().print(error_line(f"pacswatch {args.command}:", exc), highlight=False, soft_wrap=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
