"""An asyncio loop on a daemon thread: how the lab's raw servers run beside synchronous callers
(tests, the demo, `pacswatch lab`), started and stopped from outside the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, Coroutine, Iterable, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def start(self, setup: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Start the loop and run `setup()` on it; on failure, stop the loop and re-raise."""
        loop = asyncio.new_event_loop()
        self.loop = loop
        self.thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
        self.thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(setup(), loop).result(timeout)
        except BaseException:
            self.stop(None, timeout)
            raise

    def stop(self, teardown: Callable[[], Coroutine[Any, Any, object]] | None, timeout: float) -> None:
        """Run `teardown()` on the loop (best effort: stopping must not fail), then end it."""
        loop, thread = self.loop, self.thread
        if loop is None:
            return
        if thread is not None and thread.is_alive():
            if teardown is not None:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(teardown(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        loop.close()
        self.loop = self.thread = None


async def close_servers(servers: list[asyncio.AbstractServer], tasks: set[asyncio.Task],
                        writers: Iterable[asyncio.StreamWriter] = ()) -> None:
    """A raw lab server's teardown: stop listening, drop open connections (`writers`, aborted:
    a peer that holds its socket must not hold the lab), cancel the handlers and wait for them,
    then for the listeners; `servers` is emptied."""
    for server in servers:
        server.close()
    for writer in list(writers):
        writer.transport.abort()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        await server.wait_closed()
    servers.clear()
