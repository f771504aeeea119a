"""Which probe runs on which port: DICOM everywhere but on the web ports."""

from __future__ import annotations

from dataclasses import dataclass, field

from pacswatch.probes.base import Probe
from pacswatch.probes.dicom import DicomProbe

DEFAULT_WEB_PORTS: tuple[int, ...] = (8042, 80, 443, 8080, 8443)


def _http_probe() -> Probe | None:
    try:
        from pacswatch.probes.http import HttpProbe
    except ImportError:  # the web tier is optional while it is being built
        return None
    return HttpProbe()


@dataclass
class ProbeSelector:
    web_ports: frozenset[int] = frozenset(DEFAULT_WEB_PORTS)
    dicom: Probe = field(default_factory=DicomProbe)
    http: Probe | None = field(default_factory=_http_probe)

    @classmethod
    def from_args(cls, web_ports: str | None) -> "ProbeSelector":
        from pacswatch.targets import parse_ports

        if web_ports is None:
            return cls()
        return cls(web_ports=frozenset(parse_ports(web_ports)))

    def probe_for(self, port: int) -> Probe:
        if port in self.web_ports and self.http is not None:
            return self.http
        return self.dicom

    def default_ports(self, dicom_ports: tuple[int, ...]) -> list[int]:
        extra = [p for p in sorted(self.web_ports) if p not in dicom_ports] if self.http is not None else []
        return list(dicom_ports) + extra
