"""What a scan keeps of the endpoints that answered, for what follows it: the end-of-scan tables
and the owners' look-up (campaign/commands.attribute_after).

The scan used to keep every answering endpoint's full Record until its end: ~5 KB each, 30 MB
for 6,000, the largest part of the scan process's growth. What follows a scan reads little of
them: the owners' look-up, the host table and the counts read the address, port, service and
severity; only the rows a table prints need the whole record, and a table on a terminal prints
the `top` worst. So every endpoint that answered is kept as an `Answer` (four fields), and full
records only for the rows a table will print.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pacswatch.output import worst_first
from pacswatch.record import Record


class Answering(Protocol):
    """What is read of an endpoint that answered once its scan is over (a Record has it too:
    a distributed scan's come back from the database whole)."""

    @property
    def ip(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def service(self) -> str | None: ...

    @property
    def severity(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    ip: str
    port: int
    service: str | None
    severity: str | None  # the wire value ("high"), as the record holds it

    @classmethod
    def of(cls, record: Record) -> Answer:
        return cls(record.ip, record.port, record.service, record.severity)


class Answered:
    """Every endpoint of a scan that answered, as an `Answer`, and the full records of the rows
    the end-of-scan tables print: the worst `rows` (output.worst_first's order), all when None,
    none when 0."""

    def __init__(self, rows: int | None) -> None:
        self.answers: list[Answer] = []
        self._rows = rows
        self._records: list[Record] = []

    def add(self, record: Record) -> None:
        self.answers.append(Answer.of(record))
        if self._rows is None:
            self._records.append(record)
        elif self._rows > 0:
            self._records.append(record)
            # Cut back to the worst `rows` now and then: a few records more than printed.
            if len(self._records) >= 2 * self._rows + 64:
                self._records = worst_first(self._records, self._rows)[0]

    def __len__(self) -> int:
        return len(self.answers)

    def records(self) -> list[Record]:
        """The rows a table prints, most severe first."""
        return worst_first(self._records, self._rows)[0]

    def left_out(self) -> list[Answer]:
        """Those that answered and are not among `records()`: what a cut table counts."""
        shown = {(r.ip, r.port) for r in self.records()}
        return [a for a in self.answers if (a.ip, a.port) not in shown]
