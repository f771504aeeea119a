"""The probes there are, their options, and which probe runs on which port: DICOM everywhere
but on the web ports.

A probe is registered by its declaration (probes/options.py): adding one is its module, its
declaration module and a line in PROBES; the command line picks its options up from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pacswatch.probes.dicom.options import DICOM
from pacswatch.probes.http_options import WEB
from pacswatch.probes.options import COMMON_OPTIONS, Option, ProbeSettings, configure_common

if TYPE_CHECKING:
    from pacswatch.probes.base import Probe, ProbeOptions

PROBES = (DICOM, WEB)
DEFAULT_WEB_PORTS: tuple[int, ...] = (8042, 80, 443, 8080, 8443)


def declared_options() -> tuple[Option, ...]:
    """Every probe option: those all probes read, then each probe's, in PROBES order."""
    return COMMON_OPTIONS + tuple(option for probe in PROBES for option in probe.options)


def probe_settings(given: Mapping[str, Any] | None = None) -> ProbeSettings:
    """The declared options' defaults, with the values `given` (the command line's, or a stored
    scan's) in their place. A key no probe declares any more is dropped."""
    given = given or {}
    return ProbeSettings({o.key: given[o.key] if o.key in given else o.default for o in declared_options()})


def probe_options(settings: ProbeSettings) -> ProbeOptions:
    """The ProbeOptions every probe reads, each probe setting its part from `settings`.
    ValueError (or PortError) for a value no probe can use."""
    from pacswatch.probes.base import ProbeOptions

    options = configure_common(settings, ProbeOptions())
    for probe in PROBES:
        options = probe.configure(settings, options)
    return options


def _dicom_probe() -> Probe:
    return DICOM.load()()


@dataclass
class ProbeSelector:
    web_ports: frozenset[int] = frozenset(DEFAULT_WEB_PORTS)
    dicom: Probe = field(default_factory=_dicom_probe)
    # The web probe and its HTTP stack (a fifth of the CLI's start-up) load on the first web port.
    http_probe: Probe | None = None

    @property
    def http(self) -> Probe:
        if self.http_probe is None:
            self.http_probe = WEB.load()()
        return self.http_probe

    @classmethod
    def for_web_ports(cls, web_ports: str | None) -> ProbeSelector:
        """`web_ports`: --web-ports as given (None: the defaults)."""
        from pacswatch.targets import parse_ports

        if web_ports is None:
            return cls()
        return cls(web_ports=frozenset(parse_ports(web_ports)))

    def probe_for(self, port: int) -> Probe:
        if port in self.web_ports:
            return self.http
        return self.dicom

    def default_ports(self, dicom_ports: tuple[int, ...]) -> list[int]:
        return list(dicom_ports) + [p for p in sorted(self.web_ports) if p not in dicom_ports]
