"""The glue behind `pacswatch lab` and `pacswatch demo` (pacswatch/cli.py imports these)."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass
from typing import Iterable, TextIO

from pacswatch.lab.demo import format_comparisons
from pacswatch.lab.manifest import LabEndpoint, compare
from pacswatch.lab.runner import DEFAULT_BASE_IP, DEFAULT_PORT, Lab, run_lab_forever


def run_lab_command(base_ip: str = DEFAULT_BASE_IP, *, port: int = DEFAULT_PORT, names: Iterable[str] | None = None,
                    manifest_path: str | None = None) -> int:
    """`pacswatch lab [--base-ip IP]`: run the lab until Ctrl-C (or SIGTERM)."""
    return run_lab_forever(base_ip, port=port, names=names, manifest_path=manifest_path)


@dataclass(frozen=True)
class _Planned:
    index: int
    ip: str
    port: int
    blocked_reason: str | None = None


class _LabPlan:
    """The lab's endpoints as a scan plan (the runner's PlannedLike items and a size)."""

    def __init__(self, manifest: list[LabEndpoint]) -> None:
        self.items = [_Planned(i, e.ip, e.port) for i, e in enumerate(manifest)]
        self.size = len(self.items)

    def __iter__(self):
        return iter(self.items)


def start_demo_lab(base_ip: str, names: Iterable[str] | None = None, drip_interval: float = 1.0) -> Lab:
    """A started lab on the standard ports, or on free ports when they are taken (by a
    `pacswatch lab` on the same addresses, say)."""
    try:
        return Lab(base_ip, names=names, drip_interval=drip_interval).__enter__()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return Lab(base_ip, port=0, names=names, drip_interval=drip_interval).__enter__()


def run_demo_command(base_ip: str = DEFAULT_BASE_IP, output: str | None = None, *, timeout: float = 2.0,
                     names: Iterable[str] | None = None, out: TextIO | None = None) -> int:
    """`pacswatch demo`: start the lab, scan it with the real scanner (short timeouts, so the
    tarpit and the slow drip cost seconds), print the findings and how they compare with what
    the lab knows. Returns 0 when every endpoint was reported as expected, 1 otherwise."""
    from pacswatch.output import stderr_console

    from pacswatch.probes.base import ProbeOptions, Timeouts
    from pacswatch.probes.registry import ProbeSelector
    from pacswatch.scan.job import ScanJob

    out = out or sys.stdout
    err = stderr_console()
    lab = start_demo_lab(base_ip, names)
    try:
        err.print(f"pacswatch demo: {len(lab.manifest)} simulated endpoints on loopback "
                  f"({lab.manifest[0].ip} to {lab.manifest[-1].ip}), synthetic data only", highlight=False)
        records = []
        fh = open(output, "w", encoding="utf-8") if output else None  # noqa: SIM115
        try:
            job = ScanJob(plan=_LabPlan(lab.manifest), probe_for=ProbeSelector().probe_for,
                          options=ProbeOptions(timeouts=Timeouts.scaled(timeout)), concurrency=len(lab.manifest),
                          output=fh, stderr=err, on_record=lambda _index, record: records.append(record))
            job.run()
        finally:
            if fh is not None:
                fh.close()
        comparisons = compare(lab.manifest, records)
    finally:
        lab.stop()
    print("\nlab check: what the scanner reported against what the lab knows", file=out)
    print(format_comparisons(comparisons), file=out)
    good = sum(c.ok for c in comparisons)
    print(f"\n{good}/{len(comparisons)} endpoints reported as the lab expects", file=out, flush=True)
    return 0 if good == len(comparisons) else 1
