"""`pacswatch findings mark ID --real|--honeypot --reason TEXT`: an analyst's decision on a
finding's deception verdict (deception.py). It wins over the signals: a finding marked real is
notified and counted as an exposure whatever the signals say; one marked a honeypot is left out
of notices and counted apart. The decision is stored with its reason, who and when, and shows in
`findings` and `history`.

A command-group module (cli/__init__.py's contract): `register(sub)` adds `mark` under the
`findings` command that cli/campaign.py registers, so it comes after campaign in COMMAND_GROUPS.
"""

from __future__ import annotations

import argparse

from pacswatch.cli import options
from pacswatch.cli.options import positive


def register(sub) -> None:
    """Add `findings mark` under the existing `findings` command of `sub`."""
    findings = sub.choices["findings"]
    actions = findings.add_subparsers(dest="findings_action", metavar="{mark}")
    mark = actions.add_parser("mark", help="record an analyst's decision: the finding is real, or a honeypot",
                              description="Override the deception verdict of finding ID (pacswatch findings lists "
                                          "the IDs). The decision wins over the signals, is kept with its reason, "
                                          "and decides whether notify leaves the finding out.")
    mark.add_argument("finding_id", type=positive("finding ID"), metavar="ID", help="the finding (pacswatch findings lists them)")
    which = mark.add_mutually_exclusive_group(required=True)
    which.add_argument("--real", dest="override", action="store_const", const="real",
                       help="a real exposed service: notify it, count it")
    which.add_argument("--honeypot", dest="override", action="store_const", const="honeypot",
                       help="a trap (honeypot, tarpit, look-alike): leave it out of notices and exposure counts")
    mark.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the decision)")
    options.database(mark)
    mark.set_defaults(handler=cmd_mark)


def cmd_mark(args: argparse.Namespace) -> int:
    # Imported on use, as every command does: building the parser stays quick.
    from pacswatch.output import shown, stdout_console
    from pacswatch.store.repository import Repository

    reason = args.reason.strip()
    if not reason:
        raise ValueError("--reason must say why")
    with Repository.open(args.database) as repo:
        row = repo.mark_finding(args.finding_id, args.override, reason)
    out = stdout_console()
    if row is None:
        out.print(shown(f"no finding {args.finding_id}: pacswatch findings lists them"), highlight=False)
        return 1
    out.print(shown(f"finding {row['id']} ({row['ip']}:{row['port']}) marked {row['deception_override']} by "
                    f"{row['override_by']}: {row['override_reason']}"), highlight=False)
    return 0
