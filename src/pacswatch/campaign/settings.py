"""What `pacswatch scan` and `pacswatch run` hand the campaign: typed, frozen settings, built
once from the command line's arguments (cli/scan.py, cli/campaign.py).

A field left at its default here means "not given": the command line fills in its own defaults
(a new scan's rate, the top rows ...), and a resumed scan takes what it was started with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pacswatch.probes.options import ProbeSettings


@dataclass(frozen=True)
class ScanPlanSettings:
    """What a new scan probes, as given. Stored with the scan (commands.scan_parameters) and
    fixed for its life: a resume refuses any of them (commands.fixed_on_resume)."""

    targets: tuple[str, ...] = ()
    ports: str | None = None  # --ports as given; None: the default DICOM and web ports
    web_ports: str | None = None
    masscan: tuple[str, ...] = ()
    zmap: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    scope: str | None = None
    seed: int | None = None  # None: a random one
    keep_all: bool = False
    no_resolve: bool = False

    def given(self) -> list[str]:
        """The plan options set (targets and imports aside), as their command-line flags."""
        blank = ScanPlanSettings()
        return [f"--{f.name.replace('_', '-')}" for f in fields(self)
                if f.name not in ("targets", "masscan", "zmap") and getattr(self, f.name) != getattr(blank, f.name)]


@dataclass(frozen=True)
class PaceSettings:
    """How fast a scan goes and how it runs; free to change on resume."""

    rate: float | None  # new connections per second; None: the resumed scan's
    concurrency: int | None  # endpoints in flight; None: the resumed scan's
    loop: str  # the event loop: auto, asyncio or uvloop
    workers: int = 1
    quiet: bool = False
    no_progress: bool = False


@dataclass(frozen=True)
class OutputSettings:
    """Where a scan's records go, and how."""

    path: str | None  # None: standard output
    format: str | None  # jsonl or table; None: table on a terminal, JSON Lines to a file or a pipe
    open_only: bool
    top: int | None  # rows of a terminal's table; None: all


@dataclass(frozen=True)
class FollowUp:
    """What happens after a scan: owners looked up, findings' fix confirmation (both from the
    notify configuration unless given)."""

    config: str | None  # the notify configuration (TOML); None: $PACSWATCH_NOTIFY_CONFIG
    confirm_fixed_after: str | None  # a duration as given; None: the configuration's, else 6h
    attribute: bool = True


@dataclass(frozen=True)
class ScanSettings:
    """`pacswatch scan`: a new scan (`resume` None) or the resume of a stored one."""

    database: str | None  # URL or path; None: $PACSWATCH_DATABASE_URL, else the user data directory
    plan: ScanPlanSettings
    probe: ProbeSettings
    pace: PaceSettings
    output: OutputSettings
    follow_up: FollowUp
    resume: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """`pacswatch run`: rescan known services as they fall due (or at once, `now`)."""

    database: str | None
    web_ports: str | None
    exclude: tuple[str, ...]
    scope: str | None
    probe: ProbeSettings
    pace: PaceSettings
    follow_up: FollowUp
    intervals: tuple[str, ...]  # CLASS=DURATION overrides of the rescan policy
    batch: int
    tick: float
    once: bool = False
    now: str | None = None  # a selector; "" every service --severity names; None: not at once
    severity: tuple[str, ...] = ()
    forever: bool = False
