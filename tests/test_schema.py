"""The committed JSON Schema is generated from the record models; it must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from pacswatch.record import record_schema, record_schema_text

SCHEMA = Path(__file__).resolve().parents[1] / "schema" / "record.schema.json"


def test_committed_schema_matches_the_code():
    assert SCHEMA.read_text() == record_schema_text(), "run: pacswatch schema > schema/record.schema.json"


def test_schema_names_the_issue_fields():
    schema = record_schema()
    props = schema["properties"]
    for key in ("ip", "port", "transport", "status", "service", "product", "dicom", "tls", "severity",
                "reasons", "scanned_at", "elapsed_ms"):
        assert key in props
    defs = schema["$defs"]
    for key in ("accepts_any_called_ae", "called_ae_found", "promiscuous", "echo", "find", "store_accepted",
                "move_accepted", "get_accepted"):
        assert key in defs["DicomFacts"]["properties"]
    assert set(defs["Find"]["properties"]) >= {"allowed", "studies", "patients", "capped"}
    json.dumps(schema)
