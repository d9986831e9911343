"""Charts as inline SVG text: bars and lines with axes, ticks and labels, and no script.

Each function returns one ``<svg>`` element with its own width and height, so a
browser lays it out from the file alone.
"""

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 34, 64  # room for the axes' labels
COLOURS = ("#3b6ea8", "#c0504d", "#6a9a3a", "#8064a2", "#d08a2c", "#4bacc6")
FONT = 'font-family="sans-serif" font-size="11"'


def nice_ticks(largest: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``largest``: steps of 1, 2 or 5 times a power of ten."""
    if largest <= 0:
        return [0, 1]
    raw = largest / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(largest / step) + 1)]


def _open(title: str, width: int, height: int) -> list[str]:
    return [f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-family="sans-serif" font-size="14" '
            f'font-weight="bold">{escape(title)}</text>']


def _y_axis(ticks: list[float], width: int, height: int) -> list[str]:
    """Horizontal grid lines with their values, and the two axes."""
    out = []
    plot = height - TOP - BOTTOM
    for tick in ticks:
        y = height - BOTTOM - plot * tick / ticks[-1]
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_number(tick)}</text>')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{height - BOTTOM}" stroke="#333"/>')
    out.append(f'<line x1="{LEFT}" y1="{height - BOTTOM}" x2="{width - RIGHT}" y2="{height - BOTTOM}" '
               'stroke="#333"/>')
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: int) -> list[str]:
    """Labels under the axis; thinned to about 24 and slanted when they would collide."""
    every = max(1, math.ceil(len(labels) / 24))
    slant = len(labels) > 12 or max((len(label) for label in labels), default=0) > 6
    out = []
    for index, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if index % every:
            continue
        y = height - BOTTOM + 14
        turn = f' transform="rotate(-35 {x:.1f} {y})"' if slant else ""
        anchor = "end" if slant else "middle"
        out.append(f'<text x="{x:.1f}" y="{y}" text-anchor="{anchor}" {FONT}{turn}>{escape(label)}</text>')
    return out


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int], *, width: int = WIDTH,
              height: int = HEIGHT) -> str:
    """Vertical bars, one per label, on a y axis from zero."""
    ticks = nice_ticks(max(values, default=0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / max(len(values), 1)
    out = _open(title, width, height) + _y_axis(ticks, width, height)
    xs = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar_h = plot_h * value / ticks[-1]
        x = LEFT + index * slot + slot * 0.1
        xs.append(x + slot * 0.4)
        out.append(f'<rect x="{x:.1f}" y="{height - BOTTOM - bar_h:.1f}" width="{max(slot * 0.8, 1):.1f}" '
                   f'height="{bar_h:.1f}" fill="{COLOURS[0]}"><title>{escape(label)}: {value}</title></rect>')
    out += _x_labels(labels, xs, height)
    return "\n".join([*out, "</svg>"])


def hbar_chart(title: str, labels: Sequence[str], values: Sequence[int], *, width: int = WIDTH) -> str:
    """Horizontal bars for a ranking: the label at the left, the value at the bar's end."""
    row, label_w, top = 18, 170, 30
    height = top + row * max(len(values), 1) + 28
    ticks = nice_ticks(max(values, default=0))
    plot_w = width - label_w - RIGHT - 50
    out = _open(title, width, height)
    for tick in ticks:
        x = label_w + plot_w * tick / ticks[-1]
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 24}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" {FONT}>{_number(tick)}</text>')
    out.append(f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{height - 24}" stroke="#333"/>')
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + index * row
        bar_w = plot_w * value / ticks[-1]
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" {FONT}>{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(bar_w, 1):.1f}" height="{row - 6}" '
                   f'fill="{COLOURS[0]}"><title>{escape(label)}: {value}</title></rect>')
        out.append(f'<text x="{label_w + bar_w + 4:.1f}" y="{y + 13}" {FONT}>{value}</text>')
    return "\n".join([*out, "</svg>"])


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[int]], *, width: int = WIDTH,
               height: int = HEIGHT) -> str:
    """One line per series over shared x labels, with a legend; a single point is drawn as a dot."""
    ticks = nice_ticks(max((max(v, default=0) for v in series.values()), default=0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    xs = [LEFT + i * step for i in range(len(labels))]
    out = _open(title, width, height) + _y_axis(ticks, width, height)
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{x:.1f},{height - BOTTOM - plot_h * v / ticks[-1]:.1f}"
                          for x, v in zip(xs, values, strict=True))
        if len(values) == 1:
            x, y = points.split(",")
            out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
        else:
            out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend_x = LEFT + 10 + index * 140
        out.append(f'<rect x="{legend_x}" y="{TOP - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 14}" y="{TOP + 1}" {FONT}>{escape(name)}</text>')
    out += _x_labels(labels, xs, height)
    return "\n".join([*out, "</svg>"])
