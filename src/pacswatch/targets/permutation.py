"""A seeded pseudo-random permutation of [0, n) that is computed, never stored.

Why a permutation: scanning addresses in order hammers one network at a time (and looks like an
attack on it); a random order spreads the load across owners. Why computed: n can be 2**32
addresses times 20 ports, far too many to shuffle in memory. Why seeded: a scan resumes from
(seed, index of completed work), which needs the same order again (docs/design.md, style notes).

Construction: a 4-round Feistel network over the smallest power of two 2**b >= n, with "cycle
walking" to stay inside [0, n) (Black and Rogaway, "Ciphers with Arbitrary Finite Domains",
CT-RSA 2002). A Feistel network is a bijection whatever its round function, so the result is a
true permutation by construction; the halves may be unequal (b odd), which keeps 2**b < 2n and
so fewer than two Feistel evaluations per index on average. The round function is a
multiply-shift hash (Dietzfelbinger et al. 1997) keyed from the seed: not cryptographic (scan
order needs to look scattered, not to resist analysis) but a few integer operations, which is
what makes pure Python fast enough.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

_ROUNDS = 4  # even, so the unequal halves come back to their starting widths


class Permutation:
    """`p[i]` for i in [0, n) visits every value in [0, n) exactly once, in seeded order."""

    __slots__ = ("_a", "_b", "_keys", "_mults", "_n", "_seed", "_w")

    def __init__(self, n: int, seed: int) -> None:
        if n < 0:
            raise ValueError(f"permutation size must be >= 0, not {n}")
        self._n = n
        self._seed = seed
        # At least 2 bits so that n = 2 is not forced to the identity.
        bits = max(2, (n - 1).bit_length())
        self._a = bits // 2  # width of the left (high) half
        self._b = bits - self._a  # width of the right (low) half; b >= a
        # Hash arithmetic is done modulo 2**w, w a multiple of 8 and at least 64.
        self._w = max(64, -(-bits // 8) * 8)
        # Keys from an extendable-output hash: same on every platform and Python version
        # (unlike hash()), and any length we ask for.
        size = self._w // 8
        material = hashlib.shake_256(f"pacswatch-permutation-v1:{seed}:{n}".encode()).digest(
            2 * _ROUNDS * size
        )
        words = [
            int.from_bytes(material[i * size : (i + 1) * size], "big") for i in range(2 * _ROUNDS)
        ]
        self._keys = tuple(words[:_ROUNDS])
        self._mults = tuple(m | 1 for m in words[_ROUNDS:])  # odd, so the multiply is a bijection

    @property
    def seed(self) -> int:
        return self._seed

    def __len__(self) -> int:
        return self._n

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and 0 <= value < self._n

    def __getitem__(self, index: int) -> int:
        n = self._n
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"permutation index {index} outside [0, {n})")
        x = self._encrypt(index)
        while x >= n:  # cycle walking: x came from [0, n), so the cycle returns there
            x = self._encrypt(x)
        return x

    def index_of(self, value: int) -> int:
        """The index i with self[i] == value (the inverse permutation)."""
        n = self._n
        if not 0 <= value < n:
            raise ValueError(f"{value} is not in [0, {n})")
        x = self._decrypt(value)
        while x >= n:
            x = self._decrypt(x)
        return x

    def __iter__(self) -> Iterator[int]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[int]:
        """self[start], self[start + 1], ..., self[n - 1]."""
        # The body of _encrypt inlined with locals: attribute and call overhead would otherwise
        # be most of the cost per index.
        n, a, b, w = self._n, self._a, self._b, self._w
        mb, mw = (1 << b) - 1, (1 << w) - 1
        sa, sb = w - a, w - b
        (k0, k1, k2, k3), (m0, m1, m2, m3) = self._keys, self._mults
        for x in range(max(0, start), n):
            while True:
                left, right = x >> b, x & mb  # widths a, b
                left ^= (((right ^ k0) * m0) & mw) >> sa  # top a bits: stays a bits wide
                right ^= (((left ^ k1) * m1) & mw) >> sb
                left ^= (((right ^ k2) * m2) & mw) >> sa
                right ^= (((left ^ k3) * m3) & mw) >> sb
                x = (left << b) | right
                if x < n:
                    break
            yield x

    def _encrypt(self, x: int) -> int:
        a, b, w = self._a, self._b, self._w
        mw = (1 << w) - 1
        left, right = x >> b, x & ((1 << b) - 1)
        for r in range(0, _ROUNDS, 2):
            # Round r maps (L: a bits, R: b bits) to (R, L ^ F(R)) and round r + 1 swaps back;
            # written as two in-place updates, the halves never need to move.
            left ^= (((right ^ self._keys[r]) * self._mults[r]) & mw) >> (w - a)
            right ^= (((left ^ self._keys[r + 1]) * self._mults[r + 1]) & mw) >> (w - b)
        return (left << b) | right

    def _decrypt(self, x: int) -> int:
        a, b, w = self._a, self._b, self._w
        mw = (1 << w) - 1
        left, right = x >> b, x & ((1 << b) - 1)
        for r in range(_ROUNDS - 2, -1, -2):
            right ^= (((left ^ self._keys[r + 1]) * self._mults[r + 1]) & mw) >> (w - b)
            left ^= (((right ^ self._keys[r]) * self._mults[r]) & mw) >> (w - a)
        return (left << b) | right

    def __repr__(self) -> str:
        return f"Permutation(n={self._n}, seed={self._seed})"
