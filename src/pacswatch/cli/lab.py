"""`pacswatch lab` and `pacswatch demo`: the command line's part, so that lab/ stays a library
below it."""

from __future__ import annotations

import argparse
import errno
import sys
from typing import TYPE_CHECKING, Callable, Iterable, TextIO

from pacswatch.cli.options import port
from pacswatch.targets import ListPlan

if TYPE_CHECKING:
    from pacswatch.lab.manifest import LabEndpoint
    from pacswatch.lab.runner import Lab

# The lab itself (pynetdicom's peers, its web endpoints, pydantic's records and text) is imported
# when a command runs: building the parser for `--help` or a usage error does without it.

# The web lab sits beside the DICOM lab in the same /24: .40 serves, .41 is the "other host"
# that off-host redirects point at (and that must never be contacted).
WEB_HOST, WEB_OTHER_HOST = 40, 41
DEMO_WEB_PORT = 8040


LAB_WHERE = ("The lab binds loopback addresses in the /24 of --base-ip (default 127.42.0.0/24): "
             "simulated DICOM peers on .10 to .29, port 11112 (the TLS peers on port 2762; the "
             "accept-all trap on .29 also on ports 61000-61063), and "
             "web endpoints (Orthanc, DICOMweb, dcm4chee, OHIF, a login page) on .40, ports 8040 "
             "to 8049 (free ports when those are taken); .41 is the off-host address a viewer "
             "names and that must never be contacted. Synthetic patients only.")


def register(sub) -> None:
    lab = sub.add_parser("lab", help="run the lab of simulated PACS on loopback until Ctrl-C",
                         description=LAB_WHERE + " It prints its endpoints at start and runs until Ctrl-C.")
    _base_ip(lab)
    lab.set_defaults(handler=cmd_lab)

    demo = sub.add_parser("demo", help="start the lab, scan it, print the findings",
                          description=LAB_WHERE + " The demo scans it into a throw-away database "
                                                  "(unless --database) and checks every finding.")
    _base_ip(demo)
    demo.add_argument("--output", "-o", metavar="FILE", help="also write the records as JSON Lines")
    demo.add_argument("--database", metavar="URL",
                      help="store the demo scan here (default: a throw-away database, removed at the end)")
    demo.add_argument("--serve", action="store_true", help="then serve the dashboard on the scanned database "
                      "(owner, cases, a demo user with a random password) on 127.0.0.1 until Ctrl-C")
    demo.add_argument("--port", type=port, default=8000, help="the dashboard's port with --serve "
                      "(default 8000)")
    demo.set_defaults(handler=cmd_demo)


def _base_ip(p: argparse.ArgumentParser) -> None:
    # The lab's own default (lab/runner.py DEFAULT_BASE_IP), here for --help without loading the lab.
    p.add_argument("--base-ip", default="127.42.0.0", help="loopback /24 the lab uses (default 127.42.0.0)")


def cmd_lab(args: argparse.Namespace) -> int:
    return run_lab_command(args.base_ip)


def cmd_demo(args: argparse.Namespace) -> int:
    from pacswatch.cli.scan import scan_from_argv

    serve = None
    if args.serve:
        from functools import partial

        from pacswatch.cli.web import serve_demo

        serve = partial(serve_demo, port=args.port)
    return run_demo_command(args.base_ip, args.output, scan=scan_from_argv, database=args.database,
                            serve=serve)


def _web_addresses(base_ip: str) -> tuple[str, str]:
    prefix = base_ip.rsplit(".", 1)[0]
    return f"{prefix}.{WEB_HOST}", f"{prefix}.{WEB_OTHER_HOST}"


def run_lab_command(base_ip: str, *, port: int | None = None, names: Iterable[str] | None = None,
                    manifest_path: str | None = None) -> int:
    """`pacswatch lab [--base-ip IP]`: run the DICOM and web labs until Ctrl-C (or SIGTERM)."""
    from pacswatch.lab.runner import DEFAULT_PORT, format_table, run_lab_forever

    # The same fixed web ports as the demo, so a second run (and a scan written down from the
    # first) finds the same endpoints; free ones only when those are taken.
    web = _start_demo_web_lab(base_ip)
    try:
        print(f"web endpoints (scan them with --web-ports {','.join(str(e.port) for e in web.endpoints)}):\n",
              file=sys.stdout)
        print(format_table(web.endpoints) + "\n", file=sys.stdout, flush=True)
        return run_lab_forever(base_ip, port=DEFAULT_PORT if port is None else port, names=names, manifest_path=manifest_path)
    finally:
        web.stop()


def _lab_plan(manifest: list[LabEndpoint]) -> ListPlan:
    """The lab's endpoints as a scan plan, in manifest order."""
    return ListPlan(e.address for e in manifest)


def start_demo_lab(base_ip: str, names: Iterable[str] | None = None, drip_interval: float = 1.0) -> Lab:
    """A started lab on the standard ports, or on free ports when they are taken (by a
    `pacswatch lab` on the same addresses, say)."""
    from pacswatch.lab.runner import Lab

    try:
        return Lab(base_ip, names=names, drip_interval=drip_interval).__enter__()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return Lab(base_ip, port=0, names=names, drip_interval=drip_interval).__enter__()


def _start_demo_web_lab(base_ip: str):
    """The web lab on its standard ports (8040 and up), or on free ports when they are taken."""
    from pacswatch.lab.web import PACS_KINDS as WEB_PACS_KINDS
    from pacswatch.lab.web import start_web_lab

    try:
        return start_web_lab(*_web_addresses(base_ip), kinds=WEB_PACS_KINDS, base_port=DEMO_WEB_PORT)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return start_web_lab(*_web_addresses(base_ip), kinds=WEB_PACS_KINDS)


def _random_port_argv(options: dict) -> list[str]:
    """The scan flags of the lab's random port check (the accept-all host's block of ports)."""
    if not options:
        return []
    lo, hi = options["random_port_range"]
    return ["--check-random-ports", str(options["random_ports"]), "--random-port-range", f"{lo}-{hi}"]


def run_demo_command(base_ip: str, output: str | None = None, *,
                     scan: Callable[[list[str]], object], timeout: float = 2.0,
                     names: Iterable[str] | None = None, out: TextIO | None = None,
                     database: str | None = None, serve: Callable[[str, str], object] | None = None) -> int:
    """`pacswatch demo`: start the lab, scan it with the real scanner (short timeouts, so the
    tarpit and the slow drip cost seconds), print the findings and how they compare with what
    the lab knows. Returns 0 when every endpoint was reported as expected, 1 otherwise.

    `scan(argv)` runs `pacswatch scan ARGV...` (cli/scan.py's scan_from_argv; a test may pass
    its own).
    The scan is stored in a throw-away database unless `database` is given: a demo must not
    fill the operator's campaign with simulated findings (nor PACSWATCH_DATABASE_URL's).

    `serve(database, network)` (`demo --serve`: cli/web.py's serve_demo, passed in by cmd_demo) serves
    the dashboard on the scanned database until Ctrl-C, while the lab still runs (a rescan or a
    /verify link finds it); the throw-away database goes when it returns."""
    import tempfile
    from pathlib import Path

    from pacswatch.lab.manifest import compare
    from pacswatch.output import stderr_console
    from pacswatch.record import Record
    from pacswatch.safefile import open_stream

    out = out or sys.stdout
    err = stderr_console()
    # Opened first, never through a link planted at the name: an output that cannot be written
    # is refused before the lab starts and the scan runs.
    copy = open_stream(output) if output else None
    lab = start_demo_lab(base_ip, names)
    web = _start_demo_web_lab(base_ip)
    manifest = lab.manifest + web.endpoints
    try:
        err.print(f"pacswatch demo: {len(manifest)} simulated endpoints on loopback "
                  f"({lab.manifest[0].ip} to {web.endpoints[0].ip}), DICOM and web, synthetic data only",
                  highlight=False)
        with tempfile.TemporaryDirectory(prefix="pacswatch-demo-") as tmp:
            # The scan writes to a file of ours, which the check reads back; --output gets a copy:
            # read back, `-o /dev/stdout` (a pipe) would wait for ever.
            path = Path(tmp) / "records.jsonl"
            db = database or str(Path(tmp) / "demo.db")
            # The real `pacswatch scan`, stored in the default database like any scan, over the
            # lab's endpoints pinned as HOST:PORT; the web lab's free ports are its web ports.
            argv = ["scan", *(f"{e.ip}:{e.port}" for e in manifest),
                    "--web-ports", ",".join(str(e.port) for e in web.endpoints),
                    "--timeout", str(timeout), "--concurrency", str(len(manifest)), "--output", str(path),
                    *_random_port_argv(lab.random_port_options),
                    "--database", db, "--no-attribute"]
            scan(argv)
            text = path.read_text()
            records = [Record.model_validate_json(line) for line in text.splitlines() if line]
            if copy is not None:
                copy.write(text)
                copy.close()
                copy = None
            code = _lab_check(compare(manifest, records), records, len(manifest), database, out)
            if serve is not None and not any(r.status == "blocked" for r in records):
                serve(db, f"{base_ip.rsplit('.', 1)[0]}.0/24")
            return code
    finally:
        lab.stop()
        web.stop()
        if copy is not None:
            copy.close()


def _lab_check(comparisons, records, size: int, database: str | None, out: TextIO) -> int:
    from pacswatch.lab.demo import format_comparisons, traps_line
    from pacswatch.text import clean

    blocked = [r for r in records if r.status == "blocked"]
    if blocked:  # the database's opt-outs or scope cover the lab: one line, not a page of mismatches
        print(f"pacswatch demo: {len(blocked)} of {size} lab endpoints were not scanned, "
              f"blocked by {database or 'the default blocklist'} ({clean(blocked[0].detail or 'blocked')}); "
              f"run the demo without --database, or lift that opt-out or scope", file=out, flush=True)
        return 1
    print("\nlab check: what the scanner reported against what the lab knows", file=out)
    print(format_comparisons(comparisons), file=out)
    print(traps_line(records), file=out)
    good = sum(c.ok for c in comparisons)
    print(f"\n{good}/{len(comparisons)} endpoints reported as the lab expects", file=out, flush=True)
    return 0 if good == len(comparisons) else 1
