"""Realistic lab PACS: pynetdicom application entities, one per endpoint, each in its own thread.

The kinds (the manifest's `expected` says what a scanner should conclude from each):

- `open-archive`  any called/calling AE; Verification, Patient/Study Root FIND (answers from
                  the synthetic archive, honours C-CANCEL), MOVE and GET (refused per request),
                  CT/MR/Secondary Capture storage (refused per request: nothing is ever kept).
- `big-archive`   the same with a large archive, to exercise a scanner's find limit.
- `ae-restricted` the archive behind called AE `LABPACS` (`require_called_aet`): (1,1,7).
- `ae-guessable`  the archive behind called AE `ANY-SCP`, a product default a scanner may try.
- `calling-ae-restricted`  only calling AE `LABCLIENT` (`require_calling_aet`): (1,1,3).
- `echo-only`     Verification only.
- `store-only`    CT, MR and Secondary Capture storage only.
- `find-empty`    Verification and FIND over an empty archive.
- `tls-open`      the open archive inside TLS (self-signed server certificate).
- `tls-client-cert` the open archive inside TLS that demands a client certificate.

The open archive answers with PatientName and PatientID even when not asked, as some real
servers do (docs/dicom-reference.md §3.3): a scanner must drop what it did not ask for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from typing import Iterator, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom import sop_class as sc
from pynetdicom.transport import ThreadedAssociationServer

from pacswatch.lab.data import ATTRIBUTES, LEVELS, Archive, make_archive, query

LAB_AE_TITLE = "LABPACS"
ALLOWED_CALLING_AE = "LABCLIENT"
GUESSABLE_AE_TITLE = "ANY-SCP"
BIG_ARCHIVE = (40, 1500)  # patients, studies: above the probe's default find limit of 1000

VERIFICATION = [sc.Verification]
FIND = [sc.PatientRootQueryRetrieveInformationModelFind, sc.StudyRootQueryRetrieveInformationModelFind]
RETRIEVE = [
    sc.PatientRootQueryRetrieveInformationModelMove, sc.StudyRootQueryRetrieveInformationModelMove,
    sc.PatientRootQueryRetrieveInformationModelGet, sc.StudyRootQueryRetrieveInformationModelGet,
]
STORAGE = [sc.CTImageStorage, sc.MRImageStorage, sc.SecondaryCaptureImageStorage]

PACS_KINDS = (
    "open-archive", "big-archive", "ae-restricted", "ae-guessable", "calling-ae-restricted",
    "echo-only", "store-only", "find-empty", "tls-open", "tls-client-cert",
)
TLS_KINDS = frozenset({"tls-open", "tls-client-cert"})
_ARCHIVE_KINDS = frozenset(PACS_KINDS) - {"echo-only", "store-only", "find-empty"}


def _keys(identifier: Dataset) -> dict[str, str]:
    keys = {}
    for elem in identifier:
        if elem.keyword and elem.keyword != "QueryRetrieveLevel" and elem.VR != "SQ":
            value = elem.value
            if value is None:
                keys[elem.keyword] = ""
            elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                keys[elem.keyword] = "\\".join(str(v) for v in value)
            else:
                keys[elem.keyword] = str(value)
    return keys


def _answer(study, request: Dataset, level: str) -> Dataset:
    ds = Dataset()
    for elem in request:
        if not elem.keyword or elem.VR == "SQ":
            continue
        attr = ATTRIBUTES.get(elem.keyword)
        if attr is not None:
            setattr(ds, elem.keyword, getattr(study, attr))
        else:
            ds.add_new(elem.tag, elem.VR, None)  # asked for, unknown to us: returned empty
    ds.QueryRetrieveLevel = level
    # Leaky on purpose, like servers that add attributes nobody asked for.
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    if level in ("STUDY", "SERIES"):
        ds.StudyInstanceUID = study.study_instance_uid
    if level == "SERIES":
        ds.SeriesInstanceUID = study.series_instance_uid
    ds.RetrieveAETitle = LAB_AE_TITLE
    return ds


def find_handler(archive: Archive, pending_delay: float, stopping: threading.Event):
    def handle(event) -> Iterator[tuple[int, Dataset | None]]:
        request = event.identifier
        level = str(request.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            yield 0xA900, None  # identifier does not match SOP class
            return
        for study in query(archive, level, _keys(request)):
            if pending_delay and stopping.wait(pending_delay):
                return
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _answer(study, request, level)
        yield 0x0000, None

    return handle


def _refuse_move(event):
    yield None, None  # unknown move destination: 0xA801, nothing is sent anywhere


def _refuse_get(event):
    yield 0  # no sub-operations: the lab never sends an instance


def _refuse_store(event) -> int:
    return 0xA700  # out of resources: the lab never keeps what it is sent


class LabAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with two changes for a lab that must stop cleanly:
    the TLS handshake happens in the association's thread (pynetdicom does it in the accept
    loop, so one silent client would stall the server), and shutdown does not touch the AE."""

    daemon_threads = False  # server_close() joins the per-connection threads (they are brief)
    # Bounds a blocking read (the deferred handshake included) on an accepted socket.
    socket_timeout = 30.0

    def get_request(self):
        client, address = self.socket.accept()
        client.settimeout(self.socket_timeout)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def shutdown(self) -> None:
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class QuietFilter(logging.Filter):
    """Drops pynetdicom records emitted by lab threads: the lab's DEBUG logs print the
    synthetic patients it serves, which would pollute a test that searches logs for them."""

    def __init__(self) -> None:
        super().__init__()
        self.servers: set[object] = set()
        self.threads: set[threading.Thread] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        current = threading.current_thread()
        return current not in self.threads and getattr(current, "_server", None) not in self.servers

    def install(self) -> None:
        for name in [n for n in logging.root.manager.loggerDict if n == "pynetdicom" or n.startswith("pynetdicom.")]:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        for name in [n for n in logging.root.manager.loggerDict if n == "pynetdicom" or n.startswith("pynetdicom.")]:
            logging.getLogger(name).removeFilter(self)


def build_ae(kind: str) -> AE:
    if kind not in PACS_KINDS:
        raise ValueError(f"unknown lab PACS kind {kind!r}")
    title = GUESSABLE_AE_TITLE if kind == "ae-guessable" else LAB_AE_TITLE
    ae = AE(ae_title=title)
    ae.maximum_associations = 64
    ae.acse_timeout = ae.dimse_timeout = 15
    ae.network_timeout = 30
    if kind in ("ae-restricted", "ae-guessable"):
        ae.require_called_aet = True
    if kind == "calling-ae-restricted":
        ae.require_calling_aet = [ALLOWED_CALLING_AE]
    if kind == "echo-only":
        syntaxes = VERIFICATION
    elif kind == "store-only":
        syntaxes = STORAGE
    elif kind == "find-empty":
        syntaxes = VERIFICATION + FIND
    else:
        syntaxes = VERIFICATION + FIND + RETRIEVE + STORAGE
    for uid in syntaxes:
        ae.add_supported_context(uid)
    return ae


def _end_waiting_association(assoc) -> None:
    """End an association still waiting for a silent or failed peer: close its socket (the DUL
    sees Evt17) and wake an acceptor blocked for up to acse_timeout on its A-ASSOCIATE-RQ (a
    None there is pynetdicom's own 'timed out': kill and return)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.shutdown(socket.SHUT_RDWR)
    if not assoc.is_established:
        with contextlib.suppress(Exception):
            assoc.dul.to_user_queue.put(None)


class PacsServer:
    """One pynetdicom AE serving one kind on (ip, port); port 0 picks a free port."""

    def __init__(self, kind: str, ip: str, port: int, *, archive: Archive | None = None,
                 ssl_context: ssl.SSLContext | None = None, pending_delay: float = 0.0,
                 quiet: QuietFilter | None = None) -> None:
        if kind in TLS_KINDS and ssl_context is None:
            raise ValueError(f"{kind} needs an ssl_context")
        self.kind, self.ip, self.port = kind, ip, port
        if archive is None:
            archive = make_archive(0, 0) if kind == "find-empty" else (
                make_archive(*BIG_ARCHIVE) if kind == "big-archive" else make_archive())
        self.archive = archive
        self.ssl_context = ssl_context
        self.pending_delay = pending_delay
        self._quiet = quiet
        self._stopping = threading.Event()
        self._ae: AE | None = None
        self._server: LabAssociationServer | None = None
        self._thread: threading.Thread | None = None

    def build(self) -> tuple[AE, list[evt.EventHandlerType]]:
        """The application entity and its handlers (lab/traps.py serves a honeypot's instead)."""
        return build_ae(self.kind), [
            (evt.EVT_C_FIND, find_handler(self.archive, self.pending_delay, self._stopping)),
            (evt.EVT_C_MOVE, _refuse_move),
            (evt.EVT_C_GET, _refuse_get),
            (evt.EVT_C_STORE, _refuse_store),
        ]

    def start(self) -> int:
        ae, handlers = self.build()
        server = ae.make_server((self.ip, self.port), ssl_context=self.ssl_context, evt_handlers=handlers,
                                server_class=LabAssociationServer)
        self._ae, self._server = ae, cast(LabAssociationServer, server)  # made by server_class
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"pacswatch-lab-{self.kind}", daemon=True)
        if self._quiet is not None:
            self._quiet.servers.add(server)
            self._quiet.threads.add(thread)
        thread.start()
        self._thread = thread
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        server.shutdown()  # stops accepting, closes the listening socket
        associations = server.active_associations
        for assoc in associations:
            if assoc.is_established:  # aborting in another state upsets pynetdicom's state machine
                with contextlib.suppress(Exception):
                    assoc.abort(block=False)
        polite = time.monotonic() + min(0.5, timeout)
        for assoc in associations:
            if assoc.is_established:
                assoc.join(max(0.0, polite - time.monotonic()))
        for assoc in associations:
            if assoc.is_alive():
                _end_waiting_association(assoc)
        for assoc in associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._quiet is not None:
            self._quiet.servers.discard(server)
            self._quiet.threads.discard(thread)
        self._server = self._thread = self._ae = None

