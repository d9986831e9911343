"""``Windows`` (in less memory) and ``DictWindows`` (faster): the same windows a plain dict
of ``add``-ed times holds."""

import random

import pytest

from journalban.windows import DictWindows, Times, WindowKey, Windows, add, trimmed, unpack, window_key

KINDS = pytest.mark.parametrize("kind", [Windows, DictWindows])


def reference_run(kind: type[Windows] | type[DictWindows], rng: random.Random, keys: list[WindowKey],
                  steps: int) -> tuple[Windows | DictWindows, dict[WindowKey, Times]]:
    """The same random adds, pops and trims on ``kind`` and on a dict."""
    windows = kind()
    plain: dict[WindowKey, Times] = {}
    clock = 1_700_000_000.0
    for _ in range(steps):
        key = rng.choice(keys)
        action = rng.random()
        clock += rng.uniform(0, 2)
        start = clock - 60
        if action < 0.8:
            plain[key] = add(plain.get(key), clock, start)
            assert unpack(windows.add(key, clock, start)) == unpack(plain[key])
        elif action < 0.95:
            gone = plain.pop(key, None)
            popped = windows.pop(key)
            assert (popped is None) == (gone is None)
            assert popped is None or gone is None or unpack(popped) == unpack(gone)
        else:
            windows.trim(start)
            for k, held in list(plain.items()):
                kept = trimmed(held, start)
                if kept is None:
                    del plain[k]
                else:
                    plain[k] = kept
        assert len(windows) == len(plain)
    return windows, plain


def as_tuples(pairs: object) -> dict[WindowKey, tuple[float, ...]]:
    return {k: unpack(v) for k, v in pairs}  # type: ignore[attr-defined]


@KINDS
def test_windows_hold_what_a_dict_of_windows_holds(kind: type[Windows] | type[DictWindows]) -> None:
    rng = random.Random(5)
    keys: list[WindowKey] = [window_key(f"203.0.113.{i}") for i in range(40)]  # one /16, crowded
    keys += [window_key(f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.{i}") for i in range(40)]  # scattered
    keys += [window_key("0.0.0.0"), window_key("255.255.255.255"), window_key("10.1.0.0"),
             window_key("10.1.255.255")]  # the ends of a /16 and of the space
    keys += ["2001:db8::1", "2001:db8::2"]  # IPv6 stays text
    windows, plain = reference_run(kind, rng, keys, 20_000)
    assert as_tuples(windows.items()) == as_tuples(plain.items())
    for key in keys:
        held, want = windows.get(key), plain.get(key)
        assert (held is None and want is None) or (held is not None and want is not None
                                                    and unpack(held) == unpack(want))


@KINDS
def test_a_whole_slash_16_and_its_trim(kind: type[Windows] | type[DictWindows]) -> None:
    """65,536 addresses of one /16, then a trim that keeps only the later half: nothing
    older than the window start stays (memory stays bounded)."""
    windows = kind()
    base = window_key("198.51.0.0")
    assert isinstance(base, int)
    for suffix in range(65_536):
        windows.add(base | suffix, 1000.0 + suffix, 0.0)
    for suffix in range(0, 65_536, 7):
        windows.add(base | suffix, 100_000.0, 0.0)
    assert len(windows) == 65_536
    assert unpack(windows.get(base | 7) or 0.0) == (1007.0, 100_000.0)
    windows.trim(1000.0 + 32_768)
    assert len(windows) == 32_768 + len(range(0, 32_768, 7))
    assert windows.get(base) == 100_000.0
    assert windows.get(base | 1) is None
    assert all(min(unpack(held)) >= 1000.0 + 32_768 for _, held in windows.items())
    windows.trim(200_000.0)
    assert len(windows) == 0 and list(windows.items()) == []
