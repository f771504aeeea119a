"""UIDs used by the probe (PS3.6 Annex A), with short names for the record."""

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
COMPOSITE_INSTANCE_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.4.2"
COMPOSITE_INSTANCE_ROOT_GET = "1.2.840.10008.5.1.4.1.2.4.3"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

# Names used in `accepted_contexts` and in reasons; the random control class is named "control".
NAMES = {
    VERIFICATION: "verification",
    PATIENT_ROOT_FIND: "patient-root-find",
    PATIENT_ROOT_MOVE: "patient-root-move",
    PATIENT_ROOT_GET: "patient-root-get",
    STUDY_ROOT_FIND: "study-root-find",
    STUDY_ROOT_MOVE: "study-root-move",
    STUDY_ROOT_GET: "study-root-get",
    COMPOSITE_INSTANCE_ROOT_MOVE: "composite-instance-root-move",
    COMPOSITE_INSTANCE_ROOT_GET: "composite-instance-root-get",
    MODALITY_WORKLIST_FIND: "modality-worklist-find",
    CT_IMAGE_STORAGE: "ct-image-storage",
    MR_IMAGE_STORAGE: "mr-image-storage",
    SECONDARY_CAPTURE_STORAGE: "secondary-capture-storage",
}

FIND_CLASSES = frozenset({PATIENT_ROOT_FIND, STUDY_ROOT_FIND})
MOVE_CLASSES = frozenset({PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE, COMPOSITE_INSTANCE_ROOT_MOVE})
GET_CLASSES = frozenset({PATIENT_ROOT_GET, STUDY_ROOT_GET, COMPOSITE_INSTANCE_ROOT_GET})
STORAGE_CLASSES = frozenset({CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SECONDARY_CAPTURE_STORAGE})

# The order in which the capability probe proposes abstract syntaxes.
PROBE_SYNTAXES = (
    VERIFICATION,
    STUDY_ROOT_FIND,
    PATIENT_ROOT_FIND,
    STUDY_ROOT_MOVE,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_GET,
    PATIENT_ROOT_GET,
    COMPOSITE_INSTANCE_ROOT_MOVE,
    COMPOSITE_INSTANCE_ROOT_GET,
    MODALITY_WORKLIST_FIND,
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
)


def random_uid(bits: int) -> str:
    """A 2.25 UID from a random integer the caller drew (PS3.5 B.2); no I/O here."""
    return f"2.25.{bits}"
