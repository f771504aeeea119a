"""Prototypes of suggested speed-ups, applied to an unchanged pacswatch at start-up, so that the
benchmark can measure them beside pacswatch as shipped. Not for use outside bench/.

    python bench/prototype.py gc,write -- scan TARGETS ...   (the rest is pacswatch's command line)

gc     gc.freeze() once the modules are imported, and a gen-0 threshold of 100,000 instead of 700:
       py-spy put ~14% of a 10,000-endpoint scan in the cyclic GC (gc_collect_main), most of it
       re-traversing long-lived objects (1,000 suspended probes and the kept records).
write  Connection.write without asyncio.timeout_at + drain() when the transport took every byte
       (its buffer is empty, the usual case for a few hundred bytes): the timeout's timer handle,
       context manager and task bookkeeping cost more than the write itself.
"""

from __future__ import annotations

import gc
import sys


def install(features: set[str]) -> None:
    import pacswatch.cli  # noqa: F401  (import everything the scan needs before freezing)
    import pacswatch.probes.dicom  # noqa: F401
    import pacswatch.scan.job  # noqa: F401

    if "write" in features:
        from pacswatch.net import transport

        original = transport.Connection.write

        async def write(self, data: bytes, deadline: float) -> None:
            writer = self._writer
            if writer.transport.is_closing():
                return await original(self, data, deadline)
            try:
                writer.write(data)
            except Exception as exc:
                from pacswatch.net.errors import map_os_error

                raise map_os_error(exc, connecting=False) from None
            if writer.transport.get_write_buffer_size() == 0:
                return  # all sent: nothing to drain, nothing to time out
            await _drain(self, deadline)

        async def _drain(self, deadline: float) -> None:
            import asyncio

            from pacswatch.net.errors import NetError, map_os_error
            from pacswatch.status import Status

            try:
                async with asyncio.timeout_at(deadline):
                    await self._writer.drain()
            except TimeoutError:
                raise NetError(Status.IO_TIMEOUT, "peer stopped reading") from None
            except Exception as exc:
                raise map_os_error(exc, connecting=False) from None

        transport.Connection.write = write
    if "gc" in features:
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)


def main(argv: list[str]) -> int:
    features = {f for f in argv[0].split(",") if f}
    unknown = features - {"gc", "write"}
    if unknown:
        raise SystemExit(f"unknown prototype features: {', '.join(sorted(unknown))}")
    rest = argv[2:] if len(argv) > 1 and argv[1] == "--" else argv[1:]
    install(features)
    from pacswatch.cli import main as pacswatch_main

    return pacswatch_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
