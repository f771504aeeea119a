"""One DICOM association attempt on the PDU engine (net/pduio.py), with a memo of answers.

The conversation (probes/dicom_session.py: associate, echo, finds, release) is deterministic:
for one scan's request and options, what it sends next and how long it then waits depend only
on the PDUs received so far. Alike peers (one product, one configuration) send alike PDUs, so
a scan asks the same question and gets the same answer thousands of times. `ConversationTree`
remembers what the conversation did after each sequence of PDUs: a node holds the bytes it
sent, the wait that followed and, where the conversation ended, what it found. A connection
whose PDUs are all in the tree is answered from it without running the Python steps at all.

The wait is kept as the steps set it: a fresh phase limit (the phase's timeout, counted from
the PDU's arrival on each connection) or "unchanged" (a PDU that does not end the phase, such
as a response to another message: the connection keeps the deadline it already had). So a
connection answered from the tree waits exactly as long as its own live conversation would.

At the first PDU (or event) the tree does not know, the connection goes live: a fresh
conversation is replayed along the PDUs received so far (it must send exactly what the tree
says was sent: checked, a difference is our bug) and carries on with the real connection,
adding what it does to the tree. Timeouts, closes, errors and non-PDU bytes are never
remembered: they always run the steps. Neither are PDUs that carry a data set (C-FIND
matches: never kept, even in memory) or long ones; the tree's size is bounded too.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

from pacswatch.net import pduio
from pacswatch.net.errors import NetError, map_os_error
from pacswatch.net.fdlimit import is_shortage
from pacswatch.net.transport import ended, heard, over_cap, timed_out
from pacswatch.probes.dicom_session import detached
from pacswatch.status import Status

# Per tree: a few dozen distinct products and configurations fit many times. PACSWATCH_PDU_MEMO=0
# keeps no tree at all (every conversation runs live), to measure what the memo brings.
MAX_NODES = 0 if os.environ.get("PACSWATCH_PDU_MEMO") == "0" else 4096
MAX_BYTES = 2 << 20  # per tree, keys and answers together
MAX_KEY = 4096  # bytes: associations and DIMSE commands are far smaller

Make = Callable[[Callable[[], float]], tuple]  # (clock) -> (session, steps, attempt): a fresh conversation

UNCHANGED = "unchanged"  # a node's wait: the PDU left the phase deadline as it was


class _Node:
    __slots__ = ("out", "wait", "done", "children", "parent", "key", "result")

    def __init__(self, out: bytes, wait: float | str | None, done: bool, parent: "_Node | None",
                 key: bytes | None) -> None:
        self.out = out  # what the conversation wrote on reaching this node
        # Then how long it waited for the peer: seconds from reaching the node, None (no phase
        # limit: the endpoint's deadline), or UNCHANGED (the deadline it had before).
        self.wait = wait
        self.done = done
        self.children: dict[bytes, _Node] = {}
        self.parent = parent
        self.key = key  # the PDU that led here from the parent
        self.result = None  # where done: what the conversation found (copied for each hit)

    def path(self) -> list[bytes]:
        keys, node = [], self
        while node.parent is not None:
            keys.append(node.key)
            node = node.parent
        keys.reverse()
        return keys


class ConversationTree:
    def __init__(self) -> None:
        self.root: _Node | None = None
        self.size = 0
        self.bytes = 0

    def add(self, parent: _Node | None, key: bytes | None, out: bytes, wait: float | str | None,
            done: bool) -> _Node | None:
        """The node after `key` (the root when `parent` is None); None when the tree is full.
        Connections that went live at once may add the same node: the first one stays."""
        known = self.root if parent is None else parent.children.get(key)
        if known is not None:
            if known.out != out or known.done != done:
                raise RuntimeError("the DICOM conversation answered the same PDUs differently (memo disagrees)")
            return known
        cost = len(out) + (len(key) if key else 0)
        if self.size >= MAX_NODES or self.bytes + cost > MAX_BYTES:
            return None
        node = _Node(out, wait, done, parent, key)
        self.size += 1
        self.bytes += cost
        if parent is None:
            self.root = node
        else:
            parent.children[key] = node
        return node


def rememberable(pdu: bytes) -> bool:
    """A PDU short enough, and not a P-DATA-TF carrying any data-set fragment."""
    if len(pdu) > MAX_KEY:
        return False
    if pdu[0] != 0x04:
        return True
    at = 6
    while at + 6 <= len(pdu):
        length = int.from_bytes(pdu[at : at + 4], "big")
        if not pdu[at + 5] & 0x01:  # message control header: bit 0 clear is a data-set fragment
            return False
        at += 4 + length
    return True


class EngineAttempt:
    """Runs one association attempt's conversation on the engine. `future` gets what it found
    (an _Attempt), or the NetError of a connect that failed (the conversation never began)."""

    __slots__ = ("link", "loop", "tree", "make", "deadline", "future", "tag", "open", "node", "recording",
                 "session", "steps", "attempt", "connecting", "phase", "reached", "replay_at")

    def __init__(self, link: pduio.PduLink, tree: ConversationTree, make: Make, deadline: float) -> None:
        self.link = link
        self.loop = link.loop
        self.tree = tree
        self.make = make
        self.deadline = deadline  # the endpoint's
        self.future: asyncio.Future = self.loop.create_future()
        self.tag = -1
        self.open = False  # the engine has the connection
        self.node: _Node | None = None  # where in the tree this connection is
        self.recording = True  # what the live conversation does still goes into the tree
        self.session = None  # set when live
        self.steps = None
        self.attempt = None
        self.connecting = True
        self.phase: float | None = None  # the phase deadline while answered from the tree
        self.reached: list[float] = []  # when this connection reached each node of its path
        self.replay_at: float | None = None  # the clock the steps see while replayed

    def start(self, ip: str, port: int, connect_deadline: float, read_cap: int) -> None:
        """Raises ValueError for an address the engine cannot take (the caller uses asyncio), and
        the OSError of a descriptor shortage (net/fdlimit.py: the caller waits and tries again)."""
        try:
            self.tag = self.link.connect(ip, port, connect_deadline, read_cap, self.on_event)
        except OSError as exc:
            if is_shortage(exc):
                raise
            self._failed(map_os_error(exc, connecting=True))
        else:
            self.open = True

    def abort(self) -> None:
        if self.open:
            self.open = False
            self.link.abort(self.tag)

    # ------------------------------------------------------------ events

    def on_event(self, kind: int, value) -> None:
        try:
            if self.connecting:
                self._connect_event(kind, value)
            elif self.session is None and kind == pduio.PDU and (child := self.node.children.get(value)) is not None:
                self._enter(child)
            else:
                self._live(kind, value)
        except Exception as exc:  # our bug: end the connection, run() reports it on the record
            self.abort()
            if not self.future.done():
                self.future.set_exception(exc)

    def _connect_event(self, kind: int, value) -> None:
        self.connecting = False
        if kind == pduio.CONNECTED:
            root = self.tree.root
            if root is None:
                self._go_live()
            else:
                self._enter(root)
        elif kind == pduio.TIMEOUT:
            self._failed(NetError(Status.CONNECTION_TIMEOUT, "connect timed out"))
        else:  # ERROR
            self._failed(map_os_error(OSError(value, os.strerror(value)), connecting=True))

    def _enter(self, node: _Node) -> None:
        """The tree knows what the conversation does here: do it without running it."""
        now = self.loop.time()
        self.node = node
        self.reached.append(now)
        if node.done:
            attempt = node.result.copy()
            self._end(node.out, attempt)
            return
        if node.wait is not UNCHANGED:
            self.phase = None if node.wait is None else now + node.wait
        self.link.send(self.tag, node.out, self.deadline if self.phase is None else min(self.deadline, self.phase))

    def clock(self) -> float:
        """The steps' clock: during a replay, when this connection reached each PDU, so that the
        deadlines they set are this connection's own."""
        return self.loop.time() if self.replay_at is None else self.replay_at

    def _go_live(self) -> None:
        """Start the steps, replaying the PDUs received so far (all of them in the tree)."""
        self.session, self.steps, self.attempt = self.make(self.clock)
        node = self.node
        if node is None:  # at the start: the tree is empty
            out = self.session.begin(self.steps)
            self.node = self._remember(None, None, out, None)
            self._after_step(out)
            return
        path, reached = node.path(), self.reached
        try:
            self.replay_at = reached[0]
            expected = self.tree.root
            self._same(self.session.begin(self.steps), expected)
            for key, at in zip(path, reached[1:]):
                self.replay_at = at
                expected = expected.children[key]
                self._same(self.session.feed(key), expected)
        finally:
            self.replay_at = None

    def _same(self, out: bytes, node: _Node) -> None:
        if out != node.out:
            raise RuntimeError("the DICOM conversation did not repeat itself on the same PDUs (memo disagrees)")

    def _live(self, kind: int, value) -> None:
        if self.session is None:
            self._go_live()
        session = self.session
        before = session.assoc.deadline
        if kind == pduio.PDU or kind == pduio.DATA:
            out, end = heard(session, value)
        elif kind == pduio.TIMEOUT:
            out, end = timed_out(session, self.loop.time())
        elif kind == pduio.CAP:
            out, end = over_cap(session, value)
        elif kind == pduio.EOF:
            out, end = ended(session, None)
        else:  # ERROR
            out, end = ended(session, OSError(value, os.strerror(value)))
        if kind == pduio.PDU and self.recording and self.node is not None and rememberable(value):
            self.node = self._remember(self.node, value, out, before)
        else:
            self.recording = False  # timeouts, closes, errors and non-PDU bytes are never kept
        if end is not None:
            self._end(out, self.attempt, end)
        else:
            self._after_step(out)

    def _remember(self, parent: _Node | None, key: bytes | None, out: bytes, before: float | None) -> _Node | None:
        """Add where the steps are now, after `key` (None: the start) changed the phase deadline
        from `before`."""
        session = self.session
        phase = session.assoc.deadline
        if parent is not None and phase == before:
            wait: float | str | None = UNCHANGED
        else:
            wait = None if phase is None else phase - self.loop.time()
        node = self.tree.add(parent, key, out, wait, session.done)
        if node is None:
            self.recording = False
        elif session.done and node.result is None:
            node.result = self.attempt.copy()
        return node

    def _after_step(self, out: bytes) -> None:
        session = self.session
        if session.done:
            self._end(out, self.attempt)
        else:
            self.link.send(self.tag, out, session.deadline)

    # ------------------------------------------------------------ the end

    def _end(self, out: bytes, attempt, error: NetError | None = None) -> None:
        """The conversation is over: write its last bytes, then close (or abort on a failure)."""
        if error is not None and attempt.failure is None:
            attempt.failure = detached(error)
        if out:
            self.link.send(self.tag, out, self.deadline)
        if attempt.failure is None:
            self.open = False
            self.link.close(self.tag)
        else:
            self.abort()
        if not self.future.done():
            self.future.set_result(attempt)

    def _failed(self, error: NetError) -> None:
        """The connect failed: the conversation never began."""
        self.abort()
        if not self.future.done():
            self.future.set_result(detached(error))
