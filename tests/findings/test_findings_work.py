"""Completed work as intervals: the same answers as a plain set, in a handful of intervals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.findings.work import IntervalSet


@given(st.lists(st.integers(0, 200), max_size=300))
def test_behaves_like_a_set(indexes):
    work, plain = IntervalSet(), set()
    for i in indexes:
        assert work.add(i) == (i not in plain)
        plain.add(i)
    assert len(work) == len(plain)
    assert all((i in work) == (i in plain) for i in range(-1, 205))
    assert list(work.missing(201)) == [i for i in range(201) if i not in plain]
    assert IntervalSet(work.intervals()).intervals() == work.intervals()
    runs = work.intervals()
    assert all(b[0] > a[1] + 1 for a, b in zip(runs, runs[1:]))  # disjoint and not adjacent
    expected_first = next(i for i in range(202) if i not in plain)
    assert work.first_missing() == expected_first


def test_in_order_completion_stays_small():
    work = IntervalSet()
    for i in range(100_000):
        work.add(i if i % 1000 else i + 1)  # a few stragglers
    assert len(work.intervals()) < 200


@pytest.mark.parametrize("bad", [[(-1, 3)], [(5, 2)]])
def test_bad_intervals(bad):
    with pytest.raises(ValueError):
        IntervalSet(bad)


@given(st.lists(st.lists(st.integers(0, 120), max_size=40), max_size=8))
def test_changes_rebuild_the_set_from_the_previous_copy(batches):
    # A table of runs keyed by first index (scan_work) kept by deleting the changed firsts and
    # inserting the runs that start at them ends up as the set, batch after batch.
    work = IntervalSet()
    assert work.take_changes() == ([], [])  # starts the record
    table = {}
    for batch in batches:
        for i in batch:
            work.add(i)
        gone, new = work.take_changes()
        assert gone == sorted(gone) and {a for a, _ in new} <= set(gone)
        for first in gone:
            table.pop(first, None)
        table.update(new)
        assert sorted(table.items()) == work.intervals()
    assert work.take_changes() == ([], [])
