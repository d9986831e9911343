"""A detector's windows, kept small: a botnet puts a million addresses in them.

A window holds the event times (POSIX seconds) of one address's failures in one jail,
oldest first, not the failures themselves (about 1 KB each): a ban needs only how many,
since when, and the last one, which the detector has at hand. One time is a bare float;
two, a complex (two doubles in 32 bytes); a few, packed doubles; many (a high maxretry),
an array appended in place. IPv4 addresses are keys as integers, kept by ``Windows`` in
one bucket per /16 rather than one dict entry each (which cost more than their times).
"""

import socket
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

Times = float | complex | bytes | array  # type: ignore[type-arg]
WindowKey = int | str  # an IPv4 address as an integer (half the memory of its text), else the text
_PACKED = struct.Struct("d")
_FEW = 16  # beyond this many times, a window is an array: appending stays O(1)
_PACKED_FEW = [struct.Struct(f"{count}d") for count in range(_FEW + 1)]  # one C call each way, no format parsed


def ipv4_int(address: str) -> int | None:
    """A dotted-quad IPv4 address as an integer; None for anything else."""
    try:
        return int.from_bytes(socket.inet_aton(address), "big") if address.count(".") == 3 else None
    except OSError:
        return None


def unpack(times: Times) -> tuple[float, ...]:
    if isinstance(times, float):
        return (times,)
    if isinstance(times, complex):
        return (times.real, times.imag)
    if isinstance(times, bytes):
        return _PACKED_FEW[len(times) >> 3].unpack(times)
    return tuple(times)


def size(times: Times) -> int:
    kind = type(times)  # not ``isinstance(times, float | complex)``, which builds the union each call
    if kind is float:
        return 1
    if kind is complex:
        return 2
    return len(times) // 8 if kind is bytes else len(times)  # type: ignore[arg-type]


def oldest(times: "bytes | complex | array[float]") -> float:
    if isinstance(times, complex):
        return times.real
    return float(_PACKED.unpack_from(times)[0]) if isinstance(times, bytes) else float(times[0])


def newer(times: tuple[float, ...], start: float) -> tuple[float, ...]:
    """``times`` without its head of entries older than ``start`` (the oldest go first)."""
    drop = 0
    while drop < len(times) and times[drop] < start:
        drop += 1
    return times[drop:] if drop else times


def pack(times: tuple[float, ...]) -> Times:
    if len(times) == 1:
        return times[0]
    if len(times) == 2:
        return complex(*times)
    return _PACKED_FEW[len(times)].pack(*times) if len(times) <= _FEW else array("d", times)


def add(held: Times | None, t: float, start: float) -> Times:
    """The window ``held`` with ``t`` appended and the entries older than ``start`` dropped."""
    if held is None:
        return t
    if isinstance(held, float):  # the second failure, the commonest case after the first
        return t if held < start else complex(held, t)
    if isinstance(held, array):
        drop = 0
        while drop < len(held) and held[drop] < start:
            drop += 1
        if drop:
            del held[:drop]
        held.append(t)
        return held
    return pack((*newer(unpack(held), start), t))


def window_key(address: str) -> WindowKey:
    v4 = ipv4_int(address) if ":" not in address else None
    return v4 if v4 is not None else address


def trimmed(held: Times, start: float) -> Times | None:
    """``held`` without its entries older than ``start``; None when none is left."""
    if isinstance(held, float):
        return None if held < start else held
    if oldest(held) >= start:
        return held
    kept = newer(unpack(held), start)
    return pack(kept) if kept else None


class DictWindows:
    """One jail's windows in a plain dict by key. Counting into it takes about 60% of the
    instructions of ``Windows`` (no bucket to find and search), but an IPv4 address with
    one failure costs about 97 bytes against 50 there (a million random ones, measured
    with tracemalloc): for a replay, which counts a log as fast as it can and ends.
    ``Windows`` keeps its IPv6 addresses in one."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[WindowKey, Times] = {}

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: WindowKey) -> Times | None:
        return self._held.get(key)

    def add(self, key: WindowKey, t: float, start: float) -> Times:
        """The window of ``key`` with ``t`` appended and entries older than ``start`` dropped,
        kept and returned."""
        held = self._held[key] = add(self._held.get(key), t, start)
        return held

    def pop(self, key: WindowKey) -> Times | None:
        return self._held.pop(key, None)

    def items(self) -> Iterator[tuple[WindowKey, Times]]:
        yield from self._held.items()

    def trim(self, start: float) -> None:
        """Drop every entry older than ``start``, and the windows left empty."""
        for key, held in list(self._held.items()):
            now_held = trimmed(held, start)
            if now_held is None:
                del self._held[key]
            elif now_held is not held:
                self._held[key] = now_held


_SUFFIX = 0xFFFF  # an IPv4 window's place in its bucket: the address's last 16 bits


class Windows:
    """One jail's windows by address, IPv4 ones bucketed by /16.

    A dict entry and an int key cost about 76 bytes an address, more than most windows'
    times: a botnet's million addresses spent 72 MB on them. Here a /16 is one dict entry
    holding a list: first the sorted 16-bit suffixes of its addresses in an ``array``
    (2 bytes each), then each one's times in the same order (8 bytes a slot), so an address
    costs its times and about 12 bytes. Lookups bisect the suffixes (at most 16 steps,
    however many addresses one /16 sends); IPv6 addresses, keyed by text, stay in a dict.
    """

    __slots__ = ("_count", "_other", "_v4")

    def __init__(self) -> None:
        self._v4: dict[int, list[Any]] = {}  # /16 → [suffixes, times of the first, ...]
        self._other = DictWindows()  # IPv6, keyed by text
        self._count = 0

    def __len__(self) -> int:
        return self._count + len(self._other)

    def get(self, key: WindowKey) -> Times | None:
        if isinstance(key, str):
            return self._other.get(key)
        bucket = self._v4.get(key >> 16)
        if bucket is None:
            return None
        suffixes: array[int] = bucket[0]
        suffix = key & _SUFFIX
        i = bisect_left(suffixes, suffix)
        return bucket[i + 1] if i < len(suffixes) and suffixes[i] == suffix else None

    def add(self, key: WindowKey, t: float, start: float) -> Times:
        """The window of ``key`` with ``t`` appended and entries older than ``start`` dropped,
        kept and returned (``add`` of a module-level window, in place)."""
        if isinstance(key, str):
            return self._other.add(key, t, start)
        prefix, suffix = key >> 16, key & _SUFFIX
        bucket = self._v4.get(prefix)
        if bucket is None:
            self._v4[prefix] = [array("H", (suffix,)), t]
            self._count += 1
            return t
        suffixes: array[int] = bucket[0]
        i = bisect_left(suffixes, suffix)
        if i < len(suffixes) and suffixes[i] == suffix:
            held = bucket[i + 1] = add(bucket[i + 1], t, start)
            return held
        suffixes.insert(i, suffix)
        bucket.insert(i + 1, t)
        self._count += 1
        return t

    def pop(self, key: WindowKey) -> Times | None:
        if isinstance(key, str):
            return self._other.pop(key)
        prefix, suffix = key >> 16, key & _SUFFIX
        bucket = self._v4.get(prefix)
        if bucket is None:
            return None
        suffixes: array[int] = bucket[0]
        i = bisect_left(suffixes, suffix)
        if i == len(suffixes) or suffixes[i] != suffix:
            return None
        held = bucket.pop(i + 1)
        del suffixes[i]
        self._count -= 1
        if not suffixes:
            del self._v4[prefix]
        return held  # type: ignore[no-any-return]

    def items(self) -> Iterator[tuple[WindowKey, Times]]:
        for prefix, bucket in self._v4.items():
            base = prefix << 16
            for suffix, held in zip(bucket[0], bucket[1:], strict=True):
                yield base | suffix, held
        yield from self._other.items()

    def trim(self, start: float) -> None:
        """Drop every entry older than ``start``, and the windows left empty."""
        for prefix, bucket in list(self._v4.items()):
            kept_suffixes = array("H")
            kept: list[Any] = [kept_suffixes]
            changed = False
            for suffix, held in zip(bucket[0], bucket[1:], strict=True):
                now_held = trimmed(held, start)
                if now_held is not held:
                    changed = True
                if now_held is not None:
                    kept_suffixes.append(suffix)
                    kept.append(now_held)
            if not changed:
                continue
            self._count -= len(bucket) - len(kept)
            if kept_suffixes:
                self._v4[prefix] = kept
            else:
                del self._v4[prefix]
        self._other.trim(start)
