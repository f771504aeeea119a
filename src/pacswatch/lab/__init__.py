"""A lab of simulated PACS on loopback (127.0.0.0/8 only) for the demo, the tests and the benchmarks.

- `Lab` runs realistic pynetdicom servers, hostile peers and a fast responder, one per address,
  and publishes a manifest of `LabEndpoint`s with what a correct scanner should report.
- `FastResponder` listens on many endpoints at once, for benchmarks.
- `run_lab_forever` backs `pacswatch lab`; `run_demo` backs `pacswatch demo`.

Names are imported lazily so that a fast-responder worker does not pay for pynetdicom.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Lab": "runner", "run_lab_forever": "runner", "format_table": "runner",
    "DEFAULT_BASE_IP": "runner", "DEFAULT_PORT": "runner", "DEFAULT_TLS_PORT": "runner",
    "LabEndpoint": "manifest", "SPECS": "manifest", "DEFAULT_KINDS": "manifest",
    "check_record": "manifest", "compare": "manifest", "Comparison": "manifest",
    "FastResponder": "fast", "loopback_addresses": "fast", "raise_nofile_limit": "fast",
    "HostilePeers": "hostile", "HOSTILE_KINDS": "hostile",
    "PacsServer": "pacs", "PACS_KINDS": "pacs",
    "run_demo": "demo",
    "make_archive": "data", "planted_strings": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pacswatch.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pacswatch.lab.{module}"), name)
