"""Completed work of a scan as merged intervals of plan indexes.

Workers take plan indexes in order and finish them roughly in order, so the set is a long prefix
plus at most about `concurrency` stragglers: a handful of intervals whatever the scan's size.
That is what the database keeps per scan (table scan_work) and what a resume skips.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Iterator


class IntervalSet:
    """A set of non-negative integers kept as sorted, disjoint, non-adjacent [first, last] runs."""

    __slots__ = ("_firsts", "_lasts", "_count", "_changed")

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._count = 0
        # The first indexes of the runs added, grown or merged away since take_changes() (None:
        # not recorded until it is first called).
        self._changed: set[int] | None = None
        for first, last in sorted(intervals):
            for index in (first, last):
                if index < 0:
                    raise ValueError(f"negative index {index}")
            if last < first:
                raise ValueError(f"interval [{first}, {last}] ends before it starts")
            self._add_run(first, last)

    def _add_run(self, first: int, last: int) -> None:
        # Callers add runs in ascending order of `first` (the constructor) or single indexes.
        i = bisect_right(self._firsts, first) - 1
        if i >= 0 and self._lasts[i] >= first - 1:
            if self._lasts[i] >= last:
                return
            self._count += last - self._lasts[i]
            self._lasts[i] = last
        else:
            i += 1
            self._firsts.insert(i, first)
            self._lasts.insert(i, last)
            self._count += last - first + 1
        changed = self._changed
        if changed is not None:
            changed.add(self._firsts[i])
        # Swallow the runs the grown one now reaches.
        while i + 1 < len(self._firsts) and self._firsts[i + 1] <= self._lasts[i] + 1:
            if changed is not None:
                changed.add(self._firsts[i + 1])
            self._count -= min(self._lasts[i], self._lasts[i + 1]) - self._firsts[i + 1] + 1
            self._lasts[i] = max(self._lasts[i], self._lasts[i + 1])
            del self._firsts[i + 1], self._lasts[i + 1]

    def add(self, index: int) -> bool:
        """Add one index; False if it was already there."""
        if index < 0:
            raise ValueError(f"negative index {index}")
        if index in self:
            return False
        self._add_run(index, index)
        return True

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        i = bisect_right(self._firsts, index) - 1
        return i >= 0 and index <= self._lasts[i]

    def __len__(self) -> int:
        return self._count

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts))

    def take_changes(self) -> tuple[list[int], list[tuple[int, int]]]:
        """What changed since the previous call, as a table keyed by first index needs it: the
        first indexes of the runs added, grown or merged away (the rows to delete, where there
        are any), and the runs that now start at one of them (the rows to insert), ascending.
        The first call starts the record and returns nothing: its caller copies the whole set.

        A scan in random order with thousands in flight holds thousands of runs, of which a
        batch of records changes a few hundred (Repository._progress)."""
        changed, self._changed = self._changed, set()
        if not changed:
            return [], []
        firsts = sorted(changed)
        runs = []
        for first in firsts:
            i = bisect_right(self._firsts, first) - 1
            if i >= 0 and self._firsts[i] == first:
                runs.append((first, self._lasts[i]))
        return firsts, runs

    def first_missing(self) -> int:
        """The lowest index not in the set: a resume starts there."""
        return self._lasts[0] + 1 if self._firsts and self._firsts[0] == 0 else 0

    def missing(self, size: int) -> Iterator[int]:
        """Indexes in [0, size) not in the set, ascending."""
        start = 0
        for first, last in zip(self._firsts, self._lasts):
            yield from range(start, min(first, size))
            start = max(start, last + 1)
        yield from range(start, size)
