"""Bounds-checked pull/push helpers (after aioquic's packet.py Buffer).

Reading past the end raises PeerProtocolError, never IndexError: every length a peer sends is
checked against what is really there before anything is sliced or allocated.
"""

from __future__ import annotations

import struct

from pacswatch.dicom.errors import PeerProtocolError

_U16_BE = struct.Struct(">H")
_U32_BE = struct.Struct(">I")


class Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def eof(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise PeerProtocolError(f"{what}: need {n} bytes, {self.end - self.pos} left", abort_reason=6)

    def u8(self, what: str = "u8") -> int:
        self._need(1, what)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self, what: str = "u16") -> int:
        self._need(2, what)
        value: int = _U16_BE.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return value

    def u32(self, what: str = "u32") -> int:
        self._need(4, what)
        value: int = _U32_BE.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def take(self, n: int, what: str = "bytes") -> bytes:
        self._need(n, what)
        value = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return value

    def skip(self, n: int, what: str = "skip") -> None:
        self._need(n, what)
        self.pos += n

    def sub(self, n: int, what: str) -> "Reader":
        """A reader over the next n bytes; this reader moves past them."""
        self._need(n, what)
        child = Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return child


class Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> "Writer":
        self.parts.append(bytes((value,)))
        return self

    def u16(self, value: int) -> "Writer":
        self.parts.append(_U16_BE.pack(value))
        return self

    def u32(self, value: int) -> "Writer":
        self.parts.append(_U32_BE.pack(value))
        return self

    def raw(self, value: bytes) -> "Writer":
        self.parts.append(value)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self.parts)
