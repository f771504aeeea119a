"""A scan as the command line runs it: plan, probes, progress on stderr, records out, summary.

Ctrl-C (SIGINT) stops taking new endpoints, cancels the probes in flight and still prints the
summary: every record finished before it is written (the JSON Lines writer flushes on the way
out) and stored. With `workers` > 1 the probes run in worker processes (scan/worker_pool.py).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from pacswatch.net.fdlimit import concurrency_that_fits
from pacswatch.net.limits import RateLimiter
from pacswatch.output import (
    JsonLinesWriter,
    findings_table,
    host_table,
    more_line,
    summary_table,
    worst_per_host,
)
from pacswatch.probes.base import Probe, ProbeContext, ProbeOptions
from pacswatch.record import Record
from pacswatch.scan.answered import Answer, Answered
from pacswatch.scan.eventloop import run_event_loop
from pacswatch.scan.runner import PlannedLike, ScanStats, run_scan
from pacswatch.scan.worker_pool import run_in_workers


class Plan(Protocol):
    """What a scan probes (targets/plan.py's ScanPlan and ListPlan): its endpoints and their count."""

    @property
    def size(self) -> int: ...

    def __iter__(self) -> Iterator[PlannedLike]: ...


@dataclass
class ScanJob:
    plan: Plan | None  # set before run (campaign/commands.py makes the job first)
    probe_for: Callable[[int], Probe]
    options: ProbeOptions = field(default_factory=ProbeOptions)
    rate: float = 200.0
    concurrency: int = 200
    output: IO[str] | None = None
    output_format: str = "jsonl"  # jsonl | table
    # Only endpoints that answered go to the JSON Lines output (`scan --open`); all are stored.
    open_only: bool = False
    # The end-of-scan tables shown to a person stop at this many rows (None: all), with a line
    # naming how many more and the command that lists them (`findings --scan scan_id`).
    top: int | None = 25
    scan_id: int | None = None
    # Asked right before every connect (net/limits.py): a reason means the address may no longer
    # be contacted (the scan's live opt-out list).
    refuse: Callable[[str], str | None] | None = None
    # The live opt-out list as (address range, reason) pairs, for worker processes (--workers),
    # which refuse by those what this process would refuse by `refuse`.
    optouts: Callable[[], Sequence[tuple[str, str]]] | None = None
    stderr: Console = field(default_factory=lambda: Console(stderr=True))
    show_progress: bool | None = None
    show_summary: bool = True
    # Called with (plan index, record) as each endpoint completes, before the output is written.
    on_record: Callable[[int, Record], None] | None = None
    # Called when every record passed to on_record so far is in the flushed output.
    on_flush: Callable[[], None] | None = None

    event_loop: str = "auto"  # auto | asyncio | uvloop
    # More than 1: probe in that many processes (scan/worker_pool.py), which build their probes from
    # worker_settings (the scan's stored probe parameters and web ports).
    workers: int = 1
    worker_settings: dict | None = None

    def run(self) -> tuple[ScanStats, list[Answer]]:
        return run_event_loop(self.run_async(), self.event_loop)

    async def run_async(self) -> tuple[ScanStats, list[Answer]]:
        """The scan's counts and every endpoint that answered (scan/answered.py)."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_peer_failures)
        # One socket per probe in flight: raise the open-file limit for it, or probe fewer at once
        # (net/fdlimit.py), rather than report endpoints as failed for a shortage of our own.
        concurrency, lowered = concurrency_that_fits(self.concurrency)
        if lowered is not None:
            self.stderr.print(Text.assemble(("pacswatch:", "yellow"), " ", lowered), highlight=False, soft_wrap=True)
        ctx = ProbeContext(self.options, RateLimiter(self.rate, burst=max(1, min(concurrency, int(self.rate))),
                                                     refuse=self.refuse))
        plan = self.plan
        if plan is None:
            raise ValueError("a scan job runs only once its plan is set")
        stats = ScanStats(total=plan.size)
        # Only endpoints that answered, compact: bounded by findings, not by scan size.
        kept = Answered(self._rows_printed())
        writer = JsonLinesWriter(self.output) if self.output is not None and self.output_format == "jsonl" else None
        show = self.stderr.is_terminal if self.show_progress is None else self.show_progress
        progress = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TextColumn("{task.fields[findings]}"), TimeElapsedColumn(), console=self.stderr,
                            disable=not show, transient=False)
        task = progress.add_task("scan", total=stats.total, rate="", findings="")

        shown = 0.0  # when the progress bar was last updated: ten times a second is plenty

        def on_record(index: int, record: Record) -> None:
            nonlocal shown
            if self.on_record is not None:
                self.on_record(index, record)
            answered = record.service is not None or record.severity is not None
            if writer is None:
                flushed = True
            elif answered or not self.open_only:
                flushed = writer.write(record)
            else:  # left out of the output: the records written before it may still be due a flush
                flushed = writer.flush_due()
            if flushed and self.on_flush is not None:
                self.on_flush()
            if answered:
                kept.add(record)
            if show:
                now = loop.time()
                if now - shown >= 0.1 or stats.done == stats.total:
                    shown = now
                    elapsed = now - stats.started
                    progress.update(task, completed=stats.done,
                                    rate=f"{stats.done / elapsed:.0f}/s" if elapsed > 0 else "",
                                    findings=_findings_text(stats))

        stop = asyncio.Event()
        if self.workers > 1:
            if self.worker_settings is None:
                raise ValueError("--workers needs the scan's probe settings for its worker processes")
            settings = dict(self.worker_settings, rate=self.rate, concurrency=concurrency, loop=self.event_loop)
            scan = asyncio.ensure_future(
                run_in_workers(plan, settings, self.workers, on_record=on_record, stats=stats, stop=stop,
                               optouts=self.optouts))
        else:
            scan = asyncio.ensure_future(
                run_scan(plan, self.probe_for, ctx, concurrency=concurrency, on_record=on_record,
                         stats=stats, stop=stop))

        def interrupt() -> None:
            stats.interrupted = True
            stop.set()
            scan.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, interrupt)
            loop.add_signal_handler(signal.SIGTERM, interrupt)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests): no handler
            pass
        with progress:
            try:
                await scan
            except asyncio.CancelledError:
                if not stats.interrupted:
                    raise
            finally:
                if writer is not None:
                    writer.flush()
                if self.on_flush is not None:
                    self.on_flush()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    try:
                        loop.remove_signal_handler(sig)
                    except (NotImplementedError, RuntimeError):
                        pass
        elapsed = loop.time() - stats.started
        # output.py reads only the ip, port, service and severity of what host_table,
        # worst_per_host and more_line are given: an Answer has them (its annotations say Record).
        answers = cast(list[Record], kept.answers)
        if self.output is not None and self.output_format == "table":
            if _is_terminal(self.output):  # a person reads it: the worst `top`, in colour
                self._print_endpoints(Console(file=self.output), kept)
            else:  # a file or a pipe asked for a table: every row
                Console(file=self.output, width=160).print(findings_table(kept.records()))
        if self.show_summary:
            if kept and self.output_format != "table":
                self._print_endpoints(self.stderr, kept)
            if len({a.ip for a in answers}) < len(answers):
                self.stderr.print(host_table(answers, self.top))
            self.stderr.print(summary_table(stats, elapsed, worst_per_host(answers)))
        return stats, kept.answers

    def _rows_printed(self) -> int | None:
        """How many full records the end-of-scan tables print: every row for a table asked for
        in a file or a pipe, or with `top` None; the worst `top` on a terminal or in the summary;
        none when neither is printed."""
        table = self.output is not None and self.output_format == "table"
        if not table and not self.show_summary:
            return 0
        if self.top is None or (table and self.output is not None and not _is_terminal(self.output)):
            return None
        return self.top

    def _print_endpoints(self, console: Console, kept: Answered) -> None:
        """The endpoints that answered, most severe first, cut at `top` rows: rendering every
        row of a large scan cost as much CPU as the scan."""
        if not kept:
            console.print("no endpoint answered", highlight=False, markup=False)
            return
        console.print(findings_table(kept.records()))
        if left_out := kept.left_out():
            console.print(more_line(cast(list[Record], left_out), self.scan_id), highlight=False)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _quiet_peer_failures(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Peers that vanish mid-handshake make the event loop's TLS machinery log a traceback
    (uvloop: "the handler is closed"); the probe already reports it as a status. Anything else
    goes to the default handler: it may be our bug."""
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, ssl.SSLError)) or (
            isinstance(exc, RuntimeError) and "handler is closed" in str(exc)):
        return
    loop.default_exception_handler(context)


def _findings_text(stats: ScanStats) -> str:
    parts = [f"{sev} {stats.by_severity[sev]}" for sev in ("critical", "high", "medium", "low") if stats.by_severity.get(sev)]
    return " · ".join(parts)
