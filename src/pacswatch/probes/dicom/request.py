"""What the probe sends, made once per scan: the A-ASSOCIATE-RQ and the C-FIND identifiers.

Every association of a scan proposes the same contexts with the same user information; only the
called AE title differs (the scan's random one, or a guess). Encoding the ~1 KB request took
about a fifth of the scanner's CPU when profiled, so it is encoded once, the 16-byte called AE
field (PS3.8 9.3.2, offset 10) is spliced in once per title, and the result is kept. A test
checks the splice against a full encoding. The C-FIND identifiers are the same for every
peer too, and are encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacswatch.dicom import uids
from pacswatch.dicom.identifiers import patient_query, study_query
from pacswatch.dicom.pdu import AAssociateRQ, PresentationContextRQ, UserInformation, ae_title_problem, encode_pdu
from pacswatch.identity import Identity

_CALLED_AE = slice(10, 26)


def proposed_contexts(control_uid: str) -> tuple[PresentationContextRQ, ...]:
    syntaxes = list(uids.PROBE_SYNTAXES) + [control_uid]
    return tuple(PresentationContextRQ(2 * i + 1, uid, (uids.IMPLICIT_VR_LE,)) for i, uid in enumerate(syntaxes))


class RequestTemplate:
    def __init__(self, identity: Identity, max_pdu: int, control_uid: str) -> None:
        self.calling_ae = identity.calling_ae
        self.contexts = proposed_contexts(control_uid)
        self.user_info = UserInformation(
            max_length=max_pdu,
            implementation_class_uid=identity.implementation_class_uid,
            implementation_version_name=identity.implementation_version_name,
        )
        self._encoded = encode_pdu(AAssociateRQ("TEMPLATE", self.calling_ae, self.contexts, self.user_info))
        # A scan uses one random called AE and at most 32 guesses: each request is built once.
        self._built: dict[str, tuple[AAssociateRQ, bytes]] = {}

    def build(self, called_ae: str) -> tuple[AAssociateRQ, bytes]:
        built = self._built.get(called_ae)
        if built is None:
            built = self._built[called_ae] = self._build(called_ae)
        return built

    def _build(self, called_ae: str) -> tuple[AAssociateRQ, bytes]:
        request = AAssociateRQ(called_ae, self.calling_ae, self.contexts, self.user_info)
        if ae_title_problem(called_ae) is not None:
            return request, encode_pdu(request)  # the encoder raises, saying what is wrong with it
        field = called_ae.encode("ascii")
        encoded = self._encoded[: _CALLED_AE.start] + field.ljust(16, b" ") + self._encoded[_CALLED_AE.stop :]
        return request, encoded


@dataclass(frozen=True)
class FindQueries:
    """The probe's C-FIND identifiers: the permission check, keyed on a random UID that no server
    holds (permission is learnt without data), and the universal counting queries on unique keys."""

    check_study: bytes
    check_patient: bytes
    all_studies: bytes
    all_patients: bytes

    @classmethod
    def with_check_uid(cls, check_uid: str) -> "FindQueries":
        return cls(check_study=study_query(check_uid), check_patient=patient_query(check_uid[:64]),  # LO: 64
                   all_studies=study_query(""), all_patients=patient_query())
