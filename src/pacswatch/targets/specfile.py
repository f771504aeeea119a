"""Errors for bad target specs, and the reading of spec files (targets, --exclude, scope).

One line syntax for all three: one entry per line, '#' starts a comment, blank lines are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

COMMAND_LINE = "command line"


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """One bad spec: where it was (file and 1-based line, or argument position) and why."""

    source: str
    line: int | None
    text: str
    reason: str

    def __str__(self) -> str:
        if self.source == COMMAND_LINE and self.line is not None:
            where = f"argument {self.line}"
        elif self.line is not None:
            where = f"{self.source} line {self.line}"
        else:
            where = self.source
        return f"{where}: {self.text!r}: {self.reason}" if self.text else f"{where}: {self.reason}"


class TargetError(ValueError):
    """Bad target specs; `problems` lists every one found, not only the first."""

    def __init__(self, problems: Iterable[TargetProblem]) -> None:
        self.problems = tuple(problems)
        # `head` and `details`: what a terminal shows one per line (output.error_line), each
        # cleaned on its own; the message joins them for a log or a test.
        self.details = tuple(str(p) for p in self.problems) if len(self.problems) > 1 else ()
        if len(self.problems) == 1:
            self.head = message = f"bad target spec: {self.problems[0]}"
        else:
            self.head = f"{len(self.problems)} bad target specs:"
            message = "\n  ".join((self.head, *self.details))
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SpecLine:
    """A non-blank, non-comment line of a spec file; `comment` is any text after '#'."""

    line: int
    text: str
    comment: str


def read_spec_file(path: str | Path) -> list[SpecLine]:
    """The spec lines of a file, comments stripped. Raises TargetError if it cannot be read."""
    return spec_lines(read_spec_text(path))


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file. Raises TargetError if it cannot be read."""
    try:
        # utf-8-sig: files saved by Windows editors start with a byte-order mark.
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TargetError([TargetProblem(str(path), None, "", f"cannot read: {reason}")]) from exc


def spec_lines(content: str) -> list[SpecLine]:
    """The spec lines of a file's text, comments stripped (a file read elsewhere: a distributed
    scan's --exclude and --scope, read once by the scan command and stored for its workers)."""
    out = []
    for number, raw in enumerate(content.splitlines(), start=1):
        text, _, comment = raw.partition("#")
        if text.strip():
            out.append(SpecLine(number, text.strip(), comment.strip()))
    return out
