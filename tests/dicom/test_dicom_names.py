"""names.py: the numbers PS3.8 puts on the wire, named; unknown values become "unknown(n)" and
never raise (docs/dicom-reference.md §1.5: servers use these loosely)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.dicom.names import abort_names, context_result_name, reject_names


@pytest.mark.parametrize(
    "triple, names",
    [
        ((1, 1, 1), ("rejected-permanent", "service-user", "no-reason-given")),
        ((1, 1, 2), ("rejected-permanent", "service-user", "application-context-not-supported")),
        ((1, 1, 3), ("rejected-permanent", "service-user", "calling-ae-not-recognized")),
        ((1, 1, 7), ("rejected-permanent", "service-user", "called-ae-not-recognized")),
        ((1, 2, 2), ("rejected-permanent", "service-provider-acse", "protocol-version-not-supported")),
        ((2, 3, 1), ("rejected-transient", "service-provider-presentation", "temporary-congestion")),
        ((2, 3, 2), ("rejected-transient", "service-provider-presentation", "local-limit-exceeded")),
    ],
)
def test_reject_names_from_the_reference_table(triple, names):
    assert reject_names(*triple) == names


@pytest.mark.parametrize(
    "triple, names",
    [
        ((0, 1, 1), ("unknown(0)", "service-user", "no-reason-given")),
        ((3, 1, 1), ("unknown(3)", "service-user", "no-reason-given")),
        ((1, 0, 1), ("rejected-permanent", "unknown(0)", "unknown(1)")),
        ((1, 4, 1), ("rejected-permanent", "unknown(4)", "unknown(1)")),
        ((1, 1, 4), ("rejected-permanent", "service-user", "unknown(4)")),  # reserved
        ((1, 2, 3), ("rejected-permanent", "service-provider-acse", "unknown(3)")),
        ((2, 3, 7), ("rejected-transient", "service-provider-presentation", "unknown(7)")),  # loose server
        ((255, 255, 255), ("unknown(255)", "unknown(255)", "unknown(255)")),
    ],
)
def test_unknown_reject_values(triple, names):
    assert reject_names(*triple) == names


def test_reason_depends_on_the_source():
    # Reason 2 means different things for different sources (PS3.8 9.3.4).
    assert reject_names(1, 1, 2)[2] != reject_names(1, 2, 2)[2] != reject_names(2, 3, 2)[2]


@pytest.mark.parametrize(
    "pair, names",
    [
        ((0, 0), ("service-user", "not-specified")),
        ((0, 2), ("service-user", "not-specified")),  # a user abort's reason is not significant
        ((2, 0), ("service-provider", "not-specified")),
        ((2, 1), ("service-provider", "unrecognized-pdu")),
        ((2, 2), ("service-provider", "unexpected-pdu")),
        ((2, 4), ("service-provider", "unrecognized-pdu-parameter")),
        ((2, 5), ("service-provider", "unexpected-pdu-parameter")),
        ((2, 6), ("service-provider", "invalid-pdu-parameter-value")),
        ((2, 3), ("service-provider", "unknown(3)")),
        ((2, 99), ("service-provider", "unknown(99)")),
        ((1, 0), ("reserved", "not-specified")),
        ((7, 6), ("unknown(7)", "not-specified")),
    ],
)
def test_abort_names(pair, names):
    assert abort_names(*pair) == names


@pytest.mark.parametrize(
    "result, name",
    [
        (0, "acceptance"),
        (1, "user-rejection"),
        (2, "no-reason"),
        (3, "abstract-syntax-not-supported"),
        (4, "transfer-syntaxes-not-supported"),
        (5, "unknown(5)"),
        (255, "unknown(255)"),
    ],
)
def test_context_result_names(result, name):
    assert context_result_name(result) == name


@given(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_names_never_raise(a, b, c):
    for name in (*reject_names(a, b, c), *abort_names(a, b), context_result_name(c)):
        assert isinstance(name, str) and name
        assert not name.startswith("unknown(") or name.endswith(")")
