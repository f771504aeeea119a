"""pynetdicom as a plain client, to check that the fixtures work (not to test pacswatch)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from loopback import require_loopback


@dataclass
class ScuResult:
    established: bool
    echo_status: int | None = None
    count: int | None = None  # pending responses to the universal query
    final_status: int | None = None  # None: no final status (aborted or closed)
    reject: tuple[int, int, int] | None = None


def _ae(calling: str) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    return ae


def echo_and_count(
    ip: str,
    port: int,
    called: str = "ANY-SCP",
    calling: str = "PWINTEROP",
    *,
    level: str | None = "STUDY",
    ssl_context: ssl.SSLContext | None = None,
) -> ScuResult:
    """C-ECHO, then (if `level`) a universal C-FIND at STUDY or PATIENT level, counting matches."""
    require_loopback(ip)
    kwargs = {"tls_args": (ssl_context, None)} if ssl_context is not None else {}
    # pynetdicom binds its client socket to ("0.0.0.0", 0) unless told otherwise; the loopback
    # guard refuses wildcard binds, so bind to loopback explicitly.
    assoc = _ae(calling).associate(ip, port, ae_title=called, bind_address=("127.0.0.1", 0), **kwargs)
    if not assoc.is_established:
        rj = None
        prim = assoc.acceptor.primitive
        if assoc.is_rejected and prim is not None:
            rj = (prim.result, prim.result_source, prim.diagnostic)
        return ScuResult(False, reject=rj)
    out = ScuResult(True)
    try:
        status = assoc.send_c_echo()
        out.echo_status = int(status.Status) if status and "Status" in status else None
        if level is not None:
            query = Dataset()
            query.QueryRetrieveLevel = level
            if level == "PATIENT":
                query.PatientID = ""
                model = PatientRootQueryRetrieveInformationModelFind
            else:
                query.StudyInstanceUID = ""
                model = StudyRootQueryRetrieveInformationModelFind
            out.count = 0
            for status, _identifier in assoc.send_c_find(query, model):
                if not status or "Status" not in status:
                    break  # aborted / closed: no final status
                if status.Status in (0xFF00, 0xFF01):
                    out.count += 1
                else:
                    out.final_status = int(status.Status)
    finally:
        if assoc.is_established:
            assoc.release()
    return out
