"""Which probe runs on which port: DICOM everywhere but on the web ports."""

from __future__ import annotations

from dataclasses import dataclass, field

from pacswatch.probes.base import Probe
from pacswatch.probes.dicom.probe import DicomProbe

DEFAULT_WEB_PORTS: tuple[int, ...] = (8042, 80, 443, 8080, 8443)


@dataclass
class ProbeSelector:
    web_ports: frozenset[int] = frozenset(DEFAULT_WEB_PORTS)
    dicom: Probe = field(default_factory=DicomProbe)
    # The web probe and its HTTP stack (a fifth of the CLI's start-up) load on the first web port.
    http_probe: Probe | None = None

    @property
    def http(self) -> Probe:
        if self.http_probe is None:
            from pacswatch.probes.http import HttpProbe

            self.http_probe = HttpProbe()
        return self.http_probe

    @classmethod
    def from_args(cls, web_ports: str | None) -> "ProbeSelector":
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
