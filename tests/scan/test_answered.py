"""What a scan keeps of the endpoints that answered (scan/answered.py): every one as an Answer,
and full records only for the rows its tables print."""

from __future__ import annotations

import random

from pacswatch.output import worst_first
from pacswatch.record import Record
from pacswatch.scan.answered import Answer, Answered

SEVERITIES = ["critical", "high", "medium", "low", None]


def records(n: int, seed: int = 3) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        severity = rng.choice(SEVERITIES)
        out.append(Record(ip=f"127.0.{i // 250}.{i % 250 + 1}", port=104, status="success", service="dicom",
                          severity=severity))
    return out


def test_the_worst_rows_are_kept_whole_and_every_endpoint_as_an_answer():
    every = records(1000)
    kept = Answered(rows=25)
    for record in every:
        kept.add(record)
    assert kept.records() == worst_first(every, 25)[0]
    assert kept.answers == [Answer(r.ip, r.port, "dicom", r.severity) for r in every]
    left_out = kept.left_out()
    assert sorted((a.ip, a.severity) for a in left_out) == sorted((r.ip, r.severity) for r in worst_first(every, 25)[1])
    # Bounded by the rows printed, not by the scan: what makes a large scan's memory flat.
    assert len(kept._records) < 2 * 25 + 64


def test_every_row_is_kept_when_every_row_is_printed_and_none_when_none_is():
    every = records(300)
    kept_all, kept_none = Answered(rows=None), Answered(rows=0)
    for record in every:
        kept_all.add(record)
        kept_none.add(record)
    assert kept_all.records() == worst_first(every)[0] and kept_all.left_out() == []
    assert kept_none.records() == [] and len(kept_none) == len(kept_none.answers) == 300
