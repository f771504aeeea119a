"""Port lists: the default DICOM ports and the `--ports` syntax ("104,11112,4000-4010")."""

from __future__ import annotations

# Ordered by how likely a DICOM service answers there, so a scan cut short has covered the
# likeliest ports first, and reports list them in a stable, meaningful order.
DEFAULT_DICOM_PORTS: tuple[int, ...] = (
    104,  # IANA "acr-nema": the DICOM upper layer's well-known (privileged) port
    11112,  # IANA "dicom": the registered non-privileged port; DCMTK's usual default
    4242,  # Orthanc's default DICOM port
    2761,  # IANA "dicom-iscl" (DICOM Integrated Secure Communication Layer)
    2762,  # IANA "dicom-tls" (DICOM over TLS)
    # Vendor and site conventions seen on exposed servers; not IANA-assigned to DICOM.
    4006,
    3004,
    3010,
    4096,
    5678,
    2350,
    111,  # IANA assigns 111 to sunrpc; a DICOM answer here is a misconfiguration worth noting
)

_KEYWORDS = {"dicom": DEFAULT_DICOM_PORTS, "default": DEFAULT_DICOM_PORTS}


class PortError(ValueError):
    """A bad port list; the message names every bad item."""


def parse_port(text: str) -> int:
    """One port number, 1-65535. Raises ValueError with a short reason."""
    text = text.strip()
    # isdecimal() rather than int(): int() accepts "+104", " 104", "1_04" and non-ASCII digits.
    if not text.isascii() or not text.isdecimal():
        raise ValueError("a port is a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        # Port 0 is not connectable; it means "any port" to bind().
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def parse_ports(spec: str) -> tuple[int, ...]:
    """Parse "104,11112,4000-4010" (also "dicom" or "default" for DEFAULT_DICOM_PORTS).

    Order is kept (it is the order the plan's port index follows) and repeats are dropped.
    Every bad item is reported at once rather than the first only.
    """
    ports: dict[int, None] = {}
    bad: list[str] = []
    items = [item.strip() for item in spec.split(",")]
    if not any(items):
        raise PortError("empty port list")
    for item in items:
        if not item:
            bad.append("empty item (two commas in a row?)")
            continue
        if item.lower() in _KEYWORDS:
            ports.update(dict.fromkeys(_KEYWORDS[item.lower()]))
            continue
        low_text, dash, high_text = item.partition("-")
        try:
            low = parse_port(low_text)
            high = parse_port(high_text) if dash else low
        except ValueError as exc:
            bad.append(f"{item!r}: {exc}")
            continue
        if high < low:
            bad.append(f"{item!r}: range ends before it starts")
            continue
        ports.update(dict.fromkeys(range(low, high + 1)))
    if bad:
        raise PortError("bad port list: " + "; ".join(bad))
    return tuple(ports)
