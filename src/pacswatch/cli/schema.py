"""`pacswatch schema`: the JSON Schema of the record."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    sub.add_parser("schema", help="print the JSON Schema of the record").set_defaults(handler=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from pacswatch.record import record_schema_text

    sys.stdout.write(record_schema_text())
    return 0
