"""The scan plan: every (address, port) endpoint once, in a seeded random order, each checked
against the blocklist and the scope.

Endpoints are numbered: the grid of addresses x ports first (endpoint j is address j // P on
port j % P), then pinned HOST:PORT endpoints the grid does not already cover. The plan visits
them in the order of a Permutation of that numbering, and `PlannedEndpoint.index` is the
position in that order, so resuming is "same inputs, same seed, start at k" (iter_from).

Refused endpoints are yielded too, tagged with the reason, because a refusal is a result the
user must see (status `blocked`), never a silent gap in the output (docs/design.md, "Scope first").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pacswatch.targets.blocklist import Blocklist, Scope
from pacswatch.targets.permutation import Permutation
from pacswatch.targets.targetset import Endpoint, TargetSet, format_ip


@dataclass(frozen=True, slots=True)
class PlannedEndpoint:
    """One endpoint in plan order; `blocked_reason` is None when it may be scanned."""

    index: int
    ip: str
    port: int
    blocked_reason: str | None = None
    hostname: str | None = None

    @property
    def blocked(self) -> bool:
        return self.blocked_reason is not None


class ScanPlan:
    """Addresses x ports plus pinned endpoints, permuted by `seed`.

    `blocklist=None` means Blocklist.default(): scanning without one takes an explicit
    `Blocklist()`. `scope=None` means no scope is configured (everything not blocked is allowed).
    """

    __slots__ = ("_blocklist", "_extra", "_grid", "_perm", "_ports", "_scope", "_seed", "_targets")

    def __init__(
        self,
        targets: TargetSet,
        ports: Sequence[int],
        seed: int,
        blocklist: Blocklist | None = None,
        scope: Scope | None = None,
    ) -> None:
        ports = tuple(ports)
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"port {port!r} is outside 1-65535")
        if len(set(ports)) != len(ports):
            raise ValueError("repeated port in the port list")  # would scan endpoints twice
        self._targets = targets
        self._ports = ports
        self._seed = seed
        self._blocklist = Blocklist.default() if blocklist is None else blocklist
        self._scope = scope
        port_set = set(ports)
        # A pinned endpoint already in the grid is scanned once, as part of the grid.
        self._extra: tuple[Endpoint, ...] = tuple(
            ep for ep in targets.pinned if not (ep.port in port_set and ep.ip in targets)
        )
        self._grid = targets.size * len(ports)
        self._perm = Permutation(self._grid + len(self._extra), seed)

    @property
    def size(self) -> int:
        """Number of endpoints, blocked ones included (also len(plan) when it fits)."""
        return len(self._perm)

    def __len__(self) -> int:
        return len(self._perm)

    @property
    def blocklist(self) -> Blocklist:
        """What refuses endpoints (a campaign's LiveBlocklist follows the opt-out list)."""
        return self._blocklist

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def ports(self) -> tuple[int, ...]:
        return self._ports

    @property
    def targets(self) -> TargetSet:
        return self._targets

    @property
    def distinct_ports(self) -> int:
        """How many different ports the plan's endpoints use (the port list counts only when
        there are addresses to scan it on; pinned HOST:PORT targets bring their own)."""
        grid = set(self._ports) if self._targets.size else set()
        return len(grid | {ep.port for ep in self._extra})

    def __getitem__(self, index: int) -> PlannedEndpoint:
        """The endpoint at position `index` of the plan order."""
        if not 0 <= index < len(self._perm):
            raise IndexError(f"plan index {index} outside [0, {len(self._perm)})")
        return self._endpoint(index, self._perm[index])

    def __iter__(self) -> Iterator[PlannedEndpoint]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[PlannedEndpoint]:
        """Endpoints at positions start, start + 1, ..., len - 1: the resume path."""
        if start < 0:
            raise ValueError(f"start index must be >= 0, not {start}")
        endpoint = self._endpoint
        for index, number in enumerate(self._perm.iter_from(start), start=start):
            yield endpoint(index, number)

    def _endpoint(self, index: int, number: int) -> PlannedEndpoint:
        if number < self._grid:
            address, port_index = divmod(number, len(self._ports))
            version, value = self._targets.key_at(address)
            port = self._ports[port_index]
            names = self._targets.hostnames.get((version, value))
            hostname = names[0] if names else None
        else:
            ep = self._extra[number - self._grid]
            version, value, port, hostname = ep.ip.version, int(ep.ip), ep.port, ep.hostname
        reason = self._blocklist.reason_for_key(version, value)
        if reason is None and self._scope is not None:
            reason = self._scope.reason_for_key(version, value)
        return PlannedEndpoint(index, format_ip(version, value), port, reason, hostname)

    def fingerprint(self) -> str:
        """A digest of what fixes the order (targets, ports, seed).

        A checkpoint stores it so that resuming with different inputs (an edited target file, a
        name that now resolves elsewhere) is detected instead of skipping the wrong endpoints.
        The blocklist and scope are left out: they change tags, not the order.
        """
        h = hashlib.sha256(b"pacswatch-plan-v1\n")
        h.update(f"seed={self._seed}\nports={','.join(map(str, self._ports))}\n".encode())
        for first, last in self._targets.ranges():
            h.update(f"range={first}-{last}\n".encode())
        for ep in self._extra:
            h.update(f"pinned={ep}\n".encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"ScanPlan(size={self.size}, addresses={self._targets.size}, "
            f"ports={len(self._ports)}, pinned={len(self._extra)}, seed={self._seed})"
        )


class ListPlan:
    """A plan over a given list of (address, port) in that order, nothing blocked: for the lab,
    whose endpoints are its own loopback servers, and for tests."""

    def __init__(self, endpoints: Iterable[tuple[str, int]]) -> None:
        self.items = [PlannedEndpoint(i, ip, port) for i, (ip, port) in enumerate(endpoints)]
        self.size = len(self.items)

    def __iter__(self) -> Iterator[PlannedEndpoint]:
        return iter(self.items)
