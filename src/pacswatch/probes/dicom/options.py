"""The DICOM probe's options and its entry in the registry (probes/options.py says how a probe
declares itself). Light: the command line's parser reads it; dicom/probe.py loads on first use."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pacswatch.identity import Identity
from pacswatch.probes.options import MAX_AE_GUESSES, Option, ProbeDeclaration, ProbeSettings, ae_title, ae_titles

if TYPE_CHECKING:
    from pacswatch.probes.base import Probe, ProbeOptions

OPTIONS = (
    Option("no-find", "do not send C-FIND (permission check and counts)"),
    Option("find-limit", "stop counting at N results with C-CANCEL and report 'at least N' (default %(default)s)",
           1000, int, "limit", metavar="N"),
    Option("no-ae-guess", "do not retry rejected associations with product-default called AE titles"),
    Option("ae-guess", f"comma-separated called AE titles to try (at most {MAX_AE_GUESSES})",
           None, str, "AE title", ae_titles, metavar="LIST"),
    Option("calling-ae", "our calling AE title (default %(default)s)", Identity.calling_ae, str, "AE title",
           ae_title),
    Option("tls-ports", "ports where TLS is tried first (default %(default)s)", "2762", str, metavar="LIST"),
)


def configure(settings: ProbeSettings, options: ProbeOptions) -> ProbeOptions:
    from pacswatch.probes.base import DEFAULT_AE_GUESSES
    from pacswatch.targets.ports import parse_ports

    guesses: tuple[str, ...] = DEFAULT_AE_GUESSES
    if settings["ae_guess"]:
        guesses = ae_titles(settings["ae_guess"])
    if settings["no_ae_guess"]:
        guesses = ()
    return replace(options, identity=replace(options.identity, calling_ae=ae_title(settings["calling_ae"])),
                   find=not settings["no_find"], find_limit=settings["find_limit"], ae_guess=guesses,
                   tls_ports=frozenset(parse_ports(settings["tls_ports"])))


def load() -> type[Probe]:
    from pacswatch.probes.dicom.probe import DicomProbe

    return DicomProbe


DICOM = ProbeDeclaration("dicom", OPTIONS, configure, load)
