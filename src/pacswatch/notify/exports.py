"""Exports for the CERT ecosystem: IntelMQ events (harmonised format, one JSON per line) and
per-owner CSV. Both are built from Exposures (the allowlist: counts and protocol facts) and the
attribution, so they can carry no patient data.

IntelMQ field names are those of its harmonisation (intelmq/etc/harmonization.conf);
`classification.identifier` follows Shadowserver's name for the same finding where one exists
("accessible-dicom"), so that a CERT's existing rules for those reports match ours.

Traps (deception.py: a verdict at or above [notify] deception_threshold, or an analyst's
'honeypot') are not in the IntelMQ feed: it goes to other CERTs as vulnerable services. The CSV
keeps them, marked in a `deception` column (cli_views.export says why).

A service that refuses unknown callers or asks for a login (severity low) is reachable, not
shown vulnerable: it is classified `potentially-unwanted-accessible` (IntelMQ's type for a
service that should not be public) with a `-protected` identifier, so a CERT's rules for
`vulnerable-system` do not fire on it. Strings are written as they are: JSON escapes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pacswatch import __version__
from pacswatch.notify.csvexport import exposures_csv
from pacswatch.notify.exposure import Exposure
from pacswatch.safefile import write_atomic

FEED = "pacswatch"


def intelmq_event(e: Exposure, attribution: dict[str, Any] | None, *, now: datetime) -> dict[str, Any]:
    a = attribution or {}
    facts = a.get("facts") or []
    app = "dicom" if e.service == "dicom" else ("https" if e.tls else "http") if e.service == "http" else None
    identifier = "accessible-dicom" if e.service == "dicom" else "accessible-pacs-web"
    event: dict[str, Any] = {
        "feed.name": FEED,
        "feed.provider": FEED,
        "time.observation": now.isoformat(),
        "time.source": (e.last_seen or now).isoformat(),
        "source.ip": e.ip,
        "source.port": e.port,
        "protocol.transport": "tcp",
        "classification.taxonomy": "vulnerable",
        "classification.type": "potentially-unwanted-accessible" if e.protected else "vulnerable-system",
        "classification.identifier": f"{identifier}-protected" if e.protected else identifier,
        # The reasons are sentences, each ending with its full stop.
        "event_description.text": " ".join(e.reasons)[:500] if e.reasons else "exposed medical imaging service",
        "extra.severity": e.severity,
        "extra.status": e.status,
        "extra.product": e.product,
        "extra.product_version": e.product_version,
        "extra.studies": e.studies,
        "extra.patients": e.patients,
        "extra.first_seen": e.first_seen.isoformat() if e.first_seen else None,
        "extra.scanner": f"pacswatch {__version__}",
    }
    if app:
        event["protocol.application"] = app
    if a.get("contact"):
        event["source.abuse_contact"] = a["contact"]
    if a.get("owner_name"):
        event["extra.owner"] = a["owner_name"]
    for f in facts:
        kind, value = f.get("kind"), f.get("value")
        if kind == "ptr" and f.get("detail", {}).get("confirmed") and "source.reverse_dns" not in event:
            event["source.reverse_dns"] = value
        elif kind == "asn" and str(value).isdigit() and "source.asn" not in event:
            event["source.asn"] = int(value)
        elif kind == "asn.holder" and "source.as_name" not in event:
            event["source.as_name"] = value
        elif kind == "rdap.country" and "source.geolocation.cc" not in event:
            event["source.geolocation.cc"] = str(value).upper()[:2]
        elif kind == "rdap.network" and (cidr := (f.get("detail") or {}).get("cidr")):
            event.setdefault("source.network", cidr[0])
    return {k: v for k, v in event.items() if v is not None}


def intelmq_lines(exposures: Iterable[Exposure], attributions: dict[str, dict[str, Any]], *, now: datetime) -> str:
    return "".join(json.dumps(intelmq_event(e, attributions.get(e.ip), now=now), sort_keys=True) + "\n"
                   for e in exposures)


def _filename(owner_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", owner_key).strip("_")[:120] or "owner"


def per_owner_csv(exposures: Iterable[Exposure], attributions: dict[str, dict[str, Any]],
                  traps: Mapping[tuple[str, int], str] | None = None) -> dict[str, str]:
    """owner_key -> CSV text of that owner's endpoints (with owner and contact columns; with
    `traps`, a deception column marking the endpoints judged traps)."""
    groups: dict[str, list[Exposure]] = {}
    for e in exposures:
        groups.setdefault((attributions.get(e.ip) or {}).get("owner_key", "unattributed"), []).append(e)
    out = {}
    for key, items in sorted(groups.items()):
        sample = next((attributions[e.ip] for e in items if e.ip in attributions), {})
        out[key] = exposures_csv(items, extra={"owner": sample.get("owner_name", "unattributed"),
                                               "contact": sample.get("contact") or ""}, traps=traps)
    return out


def write_per_owner(folder: str | Path, tables: dict[str, str]) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, text in tables.items():
        paths.append(write_atomic(folder / f"{_filename(key)}.csv", text))
    return paths
