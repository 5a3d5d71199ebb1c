"""The drawings of the HTML report page (:mod:`simtune.report_html`): curves and cascade trees
as hand-written SVG, and the two escapes every text goes through.

Why SVG written here, not a plotting library: the page must be one file that opens from
``file://`` with no network. A JS charting library inlined would add 100s of KB to every
page and its own code to trust; matplotlib's SVG is large (each glyph a path) and has no
value-on-hover. Polylines and circles with a few lines of JS (in the page) are small, fast to
open, and every text in them goes through :func:`esc`.

Escaping: :func:`esc` for text and attributes in HTML and SVG (``html.escape`` with quotes);
:func:`script_json` for data inside ``<script>`` (JSON with ``<``, ``>``, ``&`` and the two
line separators written as ``\\uXXXX``, so no text can end the script element).
"""
from __future__ import annotations

import html
import json
import math
from typing import NamedTuple, Sequence

# matplotlib's tab10, so the page's colours are the PNG report's
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
ACTION_COLOURS = {"post": "#333333", "comment": "#1f77b4", "repost": "#ff7f0e"}
OTHER_ACTION = "#9467bd"
MAX_POINTS = 2000      # points per curve drawn (more are thinned, every k-th kept, the last always)
MAX_TREE_NODES = 300   # nodes drawn per tree (breadth first; the rest counted in a note)


def esc(text) -> str:
    """Text or an attribute value for HTML/SVG: ``& < > " '`` escaped."""
    return html.escape("" if text is None else str(text), quote=True)


def script_json(obj) -> str:
    """``obj`` as JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` appears raw, so a text
    holding ``</script>`` or ``<!--`` cannot end or change the element."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                     ("\u2029", "\\u2029")):
        s = s.replace(ch, code)
    return s


def fmt(v, digits: int = 4) -> str:
    """A number for the page: ``digits`` significant figures; other values as text."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-" if v is None else str(v)
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- curves

class Series(NamedTuple):
    """One curve: its name and its points (x ascending)."""
    name: str
    xs: list[float]
    ys: list[float]


class Chart(NamedTuple):
    """A drawn chart: the SVG, and the data its hover script reads (``charts[id]`` in the page)."""
    svg: str
    data: dict
    thinned: bool


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values from ``lo`` to ``hi`` (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        out.append(round(first + k * step, 12))
        k += 1
    return out


def _thin(xs: list, ys: list) -> tuple[list, list]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    k = math.ceil(len(xs) / MAX_POINTS)
    keep = list(range(0, len(xs), k))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def line_chart(chart_id: str, series: Sequence[Series], width: int = 560, height: int = 240) -> Chart:
    """Curves on shared axes (x = step). The page's script shows every curve's value at the
    step under the pointer; the legend is the page's (:func:`legend`)."""
    left, right, top, bottom = 58, 14, 10, 30
    drawn, thinned = [], False
    for s in series:
        xs, ys = _thin(list(s.xs), list(s.ys))
        thinned |= len(xs) < len(s.xs)
        drawn.append(Series(s.name, xs, ys))
    all_x = [x for s in drawn for x in s.xs]
    all_y = [y for s in drawn for y in s.ys]
    x0, x1 = min(all_x), max(all_x)
    y0, y1 = min(all_y), max(all_y)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg class="chart" id="{esc(chart_id)}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>']
    for t in nice_ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{esc(fmt(t, 3))}</text>')
    for t in nice_ticks(x0, x1):
        parts.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" class="grid"/>'
                     f'<text x="{px(t):.1f}" y="{top + ph + 14}" class="tick" text-anchor="middle">{esc(fmt(t, 6))}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 2}" class="tick" text-anchor="middle">step</text>')
    for i, s in enumerate(drawn):
        colour = PALETTE[i % len(PALETTE)]
        if len(s.xs) == 1:
            parts.append(f'<circle cx="{px(s.xs[0]):.1f}" cy="{py(s.ys[0]):.1f}" r="3" fill="{colour}"/>')
        else:
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.xs, s.ys))
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
    parts.append(f'<line class="cursor" x1="0" x2="0" y1="{top}" y2="{top + ph}" visibility="hidden"/>')
    parts.append("</svg>")
    data = {"box": [left, top, pw, ph], "x": [x0, x1], "y": [y0, y1],
            "series": [{"name": s.name, "colour": PALETTE[i % len(PALETTE)], "xs": s.xs, "ys": s.ys}
                       for i, s in enumerate(drawn)]}
    return Chart("".join(parts), data, thinned)


def legend(names: Sequence[str]) -> str:
    """The colour key of a chart's curves, in :func:`line_chart`'s order."""
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(n)}</span>' for i, n in enumerate(names)
    ) + "</div>"


# --------------------------------------------------------------------------- trees

class TreeNode(NamedTuple):
    """One node of a cascade, flat: ``parent`` is the index of its parent (-1 for the root)."""
    user: str
    action: str
    text: str
    parent: int
    depth: int


class Tree(NamedTuple):
    """A cascade's nodes (breadth first, root first) and how many were left out of them."""
    nodes: list[TreeNode]
    left_out: int


def flatten(root: dict, limit: int = MAX_TREE_NODES) -> Tree:
    """A nested tree ``{user, action, text, children}`` (simulate's form, and the real tree
    through ``simulate.tree_from_record``) as its first ``limit`` nodes, breadth first."""
    nodes: list[TreeNode] = []
    queue = [(root, -1, 0)]
    total = 0
    k = 0
    while k < len(queue):
        node, parent, depth = queue[k]
        k += 1
        total += 1
        if len(nodes) >= limit:
            queue.extend((c, -1, depth + 1) for c in node.get("children") or [])
            continue
        nodes.append(TreeNode(str(node.get("user", "")), str(node.get("action") or ("post" if parent < 0 else "")),
                              str(node.get("text") or ""), parent, depth))
        me = len(nodes) - 1
        queue.extend((c, me, depth + 1) for c in node.get("children") or [])
    return Tree(nodes, total - len(nodes))


class Placed(NamedTuple):
    x: float
    y: float


def layout(nodes: Sequence[TreeNode], dx: float = 30, dy: float = 56) -> list[Placed]:
    """Top-down tidy layout: leaves on consecutive columns (in node order), each parent centred
    over its first and last child, one row per depth. Iterative (deep cascades)."""
    kids: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        if n.parent >= 0:
            kids[n.parent].append(i)
    xs = [0.0] * len(nodes)
    col = 0
    order: list[int] = []
    stack = [0] if nodes else []
    while stack:  # pre-order, children in order
        i = stack.pop()
        order.append(i)
        stack.extend(reversed(kids[i]))
    for i in order:
        if not kids[i]:
            xs[i] = col
            col += 1
    for i in reversed(order):  # parents after their children
        if kids[i]:
            xs[i] = (xs[kids[i][0]] + xs[kids[i][-1]]) / 2
    return [Placed(16 + x * dx, 16 + n.depth * dy) for x, n in zip(xs, nodes)]


def tree_svg(tree: Tree, tree_id: str) -> str:
    """A cascade drawn as a tree: nodes = users (circles; the root square-ish and dark),
    edges = reactions, coloured by the reacting node's action. Hovering a node shows its
    user, action and text (``<title>``); the page's script shows it below on a click."""
    if not tree.nodes:
        return '<p class="note">(no node)</p>'
    pos = layout(tree.nodes)
    width = max(p.x for p in pos) + 16
    height = max(p.y for p in pos) + 16
    parts = [f'<svg class="tree" id="{esc(tree_id)}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
             f'height="{height:.0f}" role="img">']
    for i, n in enumerate(tree.nodes):
        if n.parent >= 0:
            a, b = pos[n.parent], pos[i]
            parts.append(f'<line x1="{a.x:.1f}" y1="{a.y:.1f}" x2="{b.x:.1f}" y2="{b.y:.1f}" '
                         f'stroke="{ACTION_COLOURS.get(n.action, OTHER_ACTION)}" class="edge"/>')
    for i, n in enumerate(tree.nodes):
        p = pos[i]
        tip = f"{n.user} · {n.action}" + (f": {n.text}" if n.text else "")
        parts.append(f'<circle class="node" data-i="{i}" cx="{p.x:.1f}" cy="{p.y:.1f}" r="{8 if i == 0 else 6}" '
                     f'fill="{ACTION_COLOURS.get(n.action, OTHER_ACTION)}"><title>{esc(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def tree_data(tree: Tree) -> list[dict]:
    """What a click on node i shows (the page's ``trees[id][i]``)."""
    return [{"user": n.user, "action": n.action, "text": n.text, "depth": n.depth} for n in tree.nodes]


def tree_legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{esc(a)}</span>' for a, c in ACTION_COLOURS.items()) + "</div>"
