"""What a probe's options are, and the values a scan runs with.

Each probe owns its options (zgrab2's module contract, as data): its declaration module
(`dicom/options.py`, `http_options.py`) lists them as `Option`s, says how their values set
`ProbeOptions`, and names its class; `registry.PROBES` lists the declarations. The command line
builds `--NAME` for every declared option (cli/options.py), so a new probe needs no edit there.

`ProbeSettings` holds the values as a person gave them: plain JSON, so a scan stores them to
resume with and hands them to its worker processes (scan/worker_main.py), which build the same
`ProbeOptions` from them without the command line.

Light on purpose: building the command line's parser reads this module and the declarations,
never the probes' stack (pydantic's records, httpx), which loads when a probe is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pacswatch.dicom.pdu import ae_title_problem
from pacswatch.identity import DEFAULT_CONTACT_URL

if TYPE_CHECKING:
    from pacswatch.probes.base import Probe, ProbeOptions

MAX_AE_GUESSES = 32


@dataclass(frozen=True)
class Option:
    """One option of a probe: `--NAME` on the command line of scan, probe and run; its value
    is kept under `key` (NAME with underscores).

    `kind` says what the value is: bool, a flag that is off unless given; int or float, a number
    greater than 0; str, text that `check` (when given) accepts or refuses with a ValueError that
    says why. `what` names the value in an error ("invalid limit: 'x' is not a whole number").
    `help` may say "%(default)s": the default is written once, in `default`."""

    name: str
    help: str
    default: bool | int | float | str | None = False
    kind: type = bool
    what: str = ""
    check: Callable[[str], object] | None = None
    metavar: str | None = None

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class ProbeSettings:
    """The probe options as given: each declared option's key -> its value (registry.py's
    probe_settings() fills in the defaults)."""

    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))  # frozen all the way

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def stored(self) -> dict[str, Any]:
        """The values as a scan stores them (JSON)."""
        return dict(self.values)


@dataclass(frozen=True)
class ProbeDeclaration:
    """What a probe tells the registry: its name, its options, how their values set the
    ProbeOptions every probe reads, and its class (imported when first made, not when declared)."""

    name: str
    options: tuple[Option, ...]
    configure: Callable[[ProbeSettings, ProbeOptions], ProbeOptions]
    load: Callable[[], Callable[[], Probe]]


def ae_title(text: str) -> str:
    """`text` if it is a valid AE title (PS3.5 6.2), else ValueError saying why."""
    problem = ae_title_problem(text)
    if problem is not None:
        raise ValueError(f"invalid AE title {text!r}: {problem}")
    return text


def ae_titles(text: str) -> tuple[str, ...]:
    """A comma-separated list of AE titles (at most MAX_AE_GUESSES), each checked; ValueError."""
    titles = tuple(a.strip() for a in text.split(",") if a.strip())
    if not titles or len(titles) > MAX_AE_GUESSES:
        raise ValueError(f"takes 1 to {MAX_AE_GUESSES} comma-separated AE titles, got {len(titles)}")
    for title in titles:
        ae_title(title)
    return titles


def contact_url(text: str) -> str:
    """--contact-url: announced in every request's User-Agent, so it is public and one header
    line. A user name or password in it is a mistake (it would be sent to every server scanned
    and stored with the scan's parameters), and so is a space or a control character."""
    from urllib.parse import urlsplit

    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("invalid contact URL: it has a space or a control character")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"invalid contact URL: {exc}") from None
    if "@" in parts.netloc:
        raise ValueError("invalid contact URL: it names a user or password (user@host), which every server "
                         "scanned would be sent; give a public page")
    if parts.scheme == "mailto" and "@" in parts.path:
        return text
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid contact URL: {text!r} is not an http://, https:// or mailto: address")
    return text


# The options every probe reads: how long to wait, and how the scanner announces itself.
COMMON_OPTIONS = (
    Option("timeout", "connect and response timeout in seconds; the other deadlines derive from it "
                      "(default %(default)g)", 4.0, float, "timeout", metavar="S"),
    Option("contact-url", "contact URL (http, https or mailto) announced in the User-Agent; no user or password",
           DEFAULT_CONTACT_URL, str, "contact URL", contact_url, metavar="URL"),
)


def configure_common(settings: ProbeSettings, options: ProbeOptions) -> ProbeOptions:
    from pacswatch.probes.base import Timeouts

    return replace(options, identity=replace(options.identity, contact_url=settings["contact_url"]),
                   timeouts=Timeouts.scaled(settings["timeout"]))
