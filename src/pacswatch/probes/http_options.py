"""The web probe's options and its entry in the registry (probes/options.py says how a probe
declares itself). Light: the command line's parser reads it; http.py (and httpx, a fifth of the
command line's start-up) loads on the first web port."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pacswatch.probes.options import Option, ProbeDeclaration, ProbeSettings

if TYPE_CHECKING:
    from pacswatch.probes.base import Probe, ProbeOptions

OPTIONS = (
    Option("try-default-credentials",
           "INTRUSIVE: try documented default web credentials (a login attempt); off by default"),
)


def configure(settings: ProbeSettings, options: ProbeOptions) -> ProbeOptions:
    return replace(options, try_default_credentials=settings["try_default_credentials"])


def load() -> type[Probe]:
    from pacswatch.probes.http import HttpProbe

    return HttpProbe


WEB = ProbeDeclaration("web", OPTIONS, configure, load)
