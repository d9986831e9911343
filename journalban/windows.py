"""A detector's windows, kept small: a botnet puts a million addresses in them.

A window holds the event times (POSIX seconds) of one address's failures in one jail,
oldest first, not the failures themselves (about 1 KB each): a ban needs only how many,
since when, and the last one, which the detector has at hand. One time is a bare float;
two, a complex (two doubles in 32 bytes); a few, packed doubles; many (a high maxretry),
an array appended in place. IPv4 addresses are keys as integers, half their text's size.
"""

import socket
import struct
from array import array

Times = float | complex | bytes | array
WindowKey = int | str  # an IPv4 address as an integer (half the memory of its text), else the text
_PACKED = struct.Struct("d")
_FEW = 16  # beyond this many times, a window is an array: appending stays O(1)


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
        return tuple(t for (t,) in _PACKED.iter_unpack(times))
    return tuple(times)


def size(times: Times) -> int:
    if isinstance(times, float | complex):
        return 1 if isinstance(times, float) else 2
    return len(times) // 8 if isinstance(times, bytes) else len(times)


def oldest(times: bytes | complex | array) -> float:
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
    return struct.pack(f"{len(times)}d", *times) if len(times) <= _FEW else array("d", times)


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
