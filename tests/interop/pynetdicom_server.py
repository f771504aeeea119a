"""A pynetdicom SCP in a thread: Verification plus Patient/Study Root C-FIND over given data sets.

The query model is deliberately simple (enough for a prober's queries, not a conformant archive):
records are de-duplicated per level by their unique key; a non-empty key in the identifier must
match (exact, `*`/`?` wildcards, or a backslash list of UIDs); return keys are filled in.
C-CANCEL is honoured between responses.
"""

from __future__ import annotations

import fnmatch
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from loopback import free_port, require_loopback

LEVEL_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_LEVEL_ORDER = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_SKIP = {"QueryRetrieveLevel", "SpecificCharacterSet"}


def _flatten(ds: Dataset) -> dict[str, Any]:
    return {e.keyword: e.value for e in ds if e.keyword and e.keyword != "PixelData" and e.VR != "SQ"}


def _matches(query: Any, value: Any) -> bool:
    q = "" if query is None else str(query)
    if q == "" or q == "*":
        return True
    v = "" if value is None else str(value)
    if "\\" in q:
        return v in q.split("\\")
    if "*" in q or "?" in q:
        return fnmatch.fnmatchcase(v.upper(), q.upper())
    return q.strip() == v.strip()


class QueryModel:
    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.records = [_flatten(ds) for ds in datasets]

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in LEVEL_KEYS:
            raise ValueError(f"bad QueryRetrieveLevel {level!r}")
        depth = _LEVEL_ORDER.index(level)
        seen: set[tuple[str, ...]] = set()
        for rec in self.records:
            key = tuple(str(rec.get(LEVEL_KEYS[lvl], "")) for lvl in _LEVEL_ORDER[: depth + 1])
            if key in seen:
                continue
            ok = all(
                _matches(elem.value, rec.get(elem.keyword))
                for elem in identifier
                if elem.keyword and elem.keyword not in _SKIP and elem.VR != "SQ"
            )
            if not ok:
                continue
            seen.add(key)
            out = Dataset()
            out.QueryRetrieveLevel = level
            for elem in identifier:
                if elem.keyword and elem.keyword not in _SKIP and elem.VR != "SQ":
                    setattr(out, elem.keyword, rec.get(elem.keyword, ""))
            yield out


class PynetdicomServer:
    """pynetdicom AE serving Verification + FIND on `ip:port` in a background thread.

    `require_calling_aet` non-empty → any other calling AE is rejected (pynetdicom answers
    A-ASSOCIATE-RJ permanent/service-user/calling-AE-not-recognised). `require_called_aet=True`
    → a called AE other than `ae_title` is rejected.
    """

    name = "pynetdicom"

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int | None = None,
        *,
        ae_title: str = "PYNETDICOM",
        require_calling_aet: Sequence[str] = (),
        require_called_aet: bool = False,
        datasets: Iterable[Dataset] = (),
        workdir: Path | None = None,
        find_delay: float = 0.0,
    ) -> None:
        self.ip = require_loopback(ip)
        self.port = port or free_port(ip)
        self.ae_title = ae_title
        self.require_calling_aet = list(require_calling_aet)
        self.require_called_aet = require_called_aet
        self.model = QueryModel(datasets)
        # Seconds per match, as an archive reading its database would take: without it the SCP
        # may queue every match before a C-CANCEL can reach it.
        self.find_delay = find_delay
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="pw-pynetdicom-"))
        self.logs_dir = self.workdir / "logs"
        self.log_path = self.logs_dir / "pynetdicom.log"
        self._server = None
        self._lock = threading.Lock()
        self.events: list[str] = []  # association-level facts, no identifiers

    def _log(self, line: str) -> None:
        with self._lock:
            self.events.append(line)
            with open(self.log_path, "a") as f:
                f.write(line + "\n")

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        try:
            identifier = event.identifier
            results = list(self.model.find(identifier))
        except Exception as exc:  # a bad identifier → "unable to process"
            self._log(f"find error: {type(exc).__name__}")
            yield 0xC000, None
            return
        self._log(f"find {identifier.get('QueryRetrieveLevel', '?')}: {len(results)} matches")
        for ds in results:
            if self.find_delay:
                time.sleep(self.find_delay)
            if event.is_cancelled:
                self._log("find cancelled")
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    def _on_accepted(self, event: Any) -> None:
        a = event.assoc
        self._log(f"accepted calling={a.requestor.ae_title!r} called={a.acceptor.ae_title!r}")

    def _on_rejected(self, event: Any) -> None:
        a = event.assoc
        self._log(f"rejected calling={a.requestor.ae_title!r} called={a.acceptor.ae_title!r}")

    def start(self) -> "PynetdicomServer":
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.require_calling_aet = self.require_calling_aet
        ae.require_called_aet = self.require_called_aet
        ae.network_timeout = 10
        ae.acse_timeout = 10
        ae.dimse_timeout = 10
        self._server = ae.start_server(
            (self.ip, self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_FIND, self._on_find),
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_REJECTED, self._on_rejected),
            ],
        )
        return self

    def begin_stop(self) -> None:
        """Nothing to do ahead of stop() for an in-process server."""

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    def __enter__(self) -> "PynetdicomServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PynetdicomServer {self.ip}:{self.port} require_calling_aet={self.require_calling_aet}>"

