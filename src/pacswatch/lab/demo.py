"""`pacswatch demo`: start a lab, let the scanner scan it, show what it found against what the
lab knows to be true. The scan is injected (the CLI passes the real one), so this module
depends on nothing but the lab and the record shape."""

from __future__ import annotations

import sys
from typing import Any, Awaitable, Callable, Iterable, TextIO

from pacswatch.deception import DEFAULT_THRESHOLD, is_trap
from pacswatch.lab.manifest import Comparison, LabEndpoint, compare
from pacswatch.lab.runner import Lab

DEMO_BASE_IP = "127.42.1.0"  # not the `pacswatch lab` default, so both can run at once

ScanFunction = Callable[[list[LabEndpoint]], Awaitable[Iterable[Any]]]


def format_comparisons(comparisons: list[Comparison]) -> str:
    rows = [("", "ENDPOINT", "ADDRESS", "STATUS", "SEVERITY", "EXPECTED", "DECEPTION")]
    for c in comparisons:
        record = c.record or {}
        want = c.endpoint.expected
        expected = f"{_show(want.get('status'))}/{_show(want.get('severity'))}"
        verdict = (record.get("deception") or {}).get("verdict")
        rows.append(("ok" if c.ok else "XX", c.endpoint.name, f"{c.endpoint.ip}:{c.endpoint.port}",
                     _show(record.get("status")), _show(record.get("severity")), expected, verdict or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for c in comparisons:
        for problem in c.problems:
            lines.append(f"  {c.endpoint.name}: {problem}")
    return "\n".join(lines)


def traps_line(records: Iterable[Any], threshold: float = DEFAULT_THRESHOLD) -> str:
    """Which endpoints the scan judged traps, and so leaves out of notices (notify skips a
    finding whose verdict reaches [notify] deception_threshold)."""
    traps = []
    for record in records:
        data = record.model_dump(mode="json") if hasattr(record, "model_dump") else record
        d = data.get("deception") or {}
        if is_trap(d.get("verdict"), d.get("confidence"), None, threshold):
            traps.append(f"{data['ip']}:{data['port']} {d['verdict']} {d['confidence']:.2f}")
    if not traps:
        return "\ntraps recognised: none"
    return (f"\ntraps recognised, kept and listed but left out of notices (confidence >= {threshold:g}): "
            + ", ".join(traps))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict) and "one_of" in value:
        return "|".join(map(str, value["one_of"]))
    return str(value)


async def run_demo(scan: ScanFunction, *, base_ip: str = DEMO_BASE_IP, port: int = 11112,
                   names: Iterable[str] | None = None, drip_interval: float = 1.0,
                   out: TextIO | None = None) -> int:
    """Scan a fresh lab with `scan(manifest) -> records` and print the comparison.
    Returns 0 when every endpoint was reported as expected, 1 otherwise."""
    out = out or sys.stdout
    async with Lab(base_ip, port=port, names=names, drip_interval=drip_interval) as lab:
        print(f"lab up: {len(lab.manifest)} simulated endpoints on {base_ip}/24 (synthetic data only); scanning...",
              file=out, flush=True)
        records = list(await scan(list(lab.manifest)))
        comparisons = compare(lab.manifest, records)
    print(format_comparisons(comparisons), file=out)
    good = sum(c.ok for c in comparisons)
    print(f"\n{good}/{len(comparisons)} endpoints reported as the lab expects", file=out, flush=True)
    return 0 if good == len(comparisons) else 1
