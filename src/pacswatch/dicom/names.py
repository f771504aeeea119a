"""Names for the numbers PS3.8 puts on the wire. Unknown values become `unknown(n)`, never errors."""

from __future__ import annotations

REJECT_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCE = {1: "service-user", 2: "service-provider-acse", 3: "service-provider-presentation"}
# PS3.8 9.3.4: reasons depend on the source.
REJECT_REASON = {
    1: {1: "no-reason-given", 2: "application-context-not-supported", 3: "calling-ae-not-recognized",
        7: "called-ae-not-recognized"},
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}
ABORT_SOURCE = {0: "service-user", 1: "reserved", 2: "service-provider"}
ABORT_REASON = {0: "not-specified", 1: "unrecognized-pdu", 2: "unexpected-pdu", 4: "unrecognized-pdu-parameter",
                5: "unexpected-pdu-parameter", 6: "invalid-pdu-parameter-value"}
CONTEXT_RESULT = {0: "acceptance", 1: "user-rejection", 2: "no-reason", 3: "abstract-syntax-not-supported",
                  4: "transfer-syntaxes-not-supported"}


def _name(table: dict[int, str], value: int) -> str:
    return table.get(value, f"unknown({value})")


def reject_names(result: int, source: int, reason: int) -> tuple[str, str, str]:
    return (
        _name(REJECT_RESULT, result),
        _name(REJECT_SOURCE, source),
        _name(REJECT_REASON.get(source, {}), reason),
    )


def abort_names(source: int, reason: int) -> tuple[str, str]:
    # A service-user abort's reason field is not significant (PS3.8 9.3.8).
    return _name(ABORT_SOURCE, source), (_name(ABORT_REASON, reason) if source == 2 else "not-specified")


def context_result_name(result: int) -> str:
    return _name(CONTEXT_RESULT, result)
