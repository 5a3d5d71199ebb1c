"""``report.html``: one self-contained page per experiment folder (``simtune report DIR``, and
``simtune demo`` at its end), holding what the folder has.

- **Summary**: the settings that matter (the whole config.yaml folded below), timings, and
  the data steps' counts (in, out, rejected, dropped).
- **Curves**: loss, reward and learning rate from ``metrics.jsonl`` (read by
  :func:`simtune.report.read_metrics`, as the PNG report), the value of every curve at the
  step under the pointer shown on hover.
- **Evaluation** tables as in the Markdown reports, every baseline beside the model and the
  best row of each column marked (:func:`best_rows`); the recipe's examples below them
  (social pools and cascades, reviews, math completions: :mod:`simtune.report_sections`).

One file, no network: CSS, the data and the script are inline, the drawings hand-written SVG
(:mod:`simtune.report_svg` says why); it opens from ``file://``. Every text from the folder
goes through ``report_svg.esc`` (HTML) or ``report_svg.script_json`` (data in the script);
the script sets texts with ``textContent`` only. A file the page would show that is absent
or unreadable leaves its part out with a one-line note at the top of the page, never an error.
The page is written atomically (:func:`simtune.io.atomic_write_text`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple, Sequence

from simtune.io import check_apart
from simtune.io import atomic_write_text
from simtune.report_svg import Series, esc, fmt, legend, line_chart, script_json

# settings shown in the summary when the config has them (the whole config is folded below)
KEY_SETTINGS = ("recipe", "run_name", "model_name_or_path", "finetuning_type", "lora_rank", "num_train_epochs",
                "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "per_device_train_batch_size",
                "gradient_accumulation_steps", "max_length", "max_samples", "seed", "train_file", "data_path",
                "samples_dir", "max_depth", "who_layer", "who_train_from", "text_from_layer", "text_share",
                "reward_funcs", "reward_weights", "num_generations", "beta", "depth_limit")


# --------------------------------------------------------------------------- tables

class Column(NamedTuple):
    """A table column: the key of a row's values, its header, and which value is best:
    ``"max"``, ``"min"``, ``"one"`` (closest to 1: a ratio to the real value) or None."""
    key: str
    label: str
    better: str | None = None
    digits: int | None = 3  # decimals; None: 4 significant figures


class TableRow(NamedTuple):
    """A table row: an answerer and its values. A ``reference`` row (the real data, the rule
    that made the data) is shown in italics and never marked best: it is the ceiling."""
    name: str
    values: dict
    reference: bool = False


_BETTER = {"max": lambda v: -v, "min": lambda v: v, "one": lambda v: abs(v - 1.0)}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def best_rows(rows: Sequence[TableRow], columns: Sequence[Column]) -> dict[str, set[str]]:
    """Per column with a ``better``, the names of the rows holding its best value (ties: all
    of them). Reference rows and values that are not finite numbers take no part; a column
    where fewer than two rows have a value, or where all of them tie, marks none (nothing
    was beaten)."""
    out: dict[str, set[str]] = {}
    for c in columns:
        if c.better is None:
            continue
        if c.better not in _BETTER:
            raise ValueError(f"column {c.key}: unknown 'better' {c.better!r} (max, min, one or None)")
        vals = [(r.name, float(r.values[c.key])) for r in rows if not r.reference and _finite(r.values.get(c.key))]
        if len(vals) < 2:
            continue
        key = _BETTER[c.better]
        top = min(key(v) for _, v in vals)
        best = {n for n, v in vals if key(v) <= top + 1e-12}
        if len(best) < len(vals):
            out[c.key] = best
    return out


_HINT = {"max": "higher is better", "min": "lower is better", "one": "closest to 1 is best"}


def html_table(rows: Sequence[TableRow], columns: Sequence[Column], first: str = "answerer",
               caption: str | None = None) -> str:
    """Rows x columns, the best value of each column marked (class ``best``, and a star)."""
    best = best_rows(rows, columns)
    head = f"<th>{esc(first)}</th>" + "".join(
        f'<th title="{esc(_HINT.get(c.better, ""))}">{esc(c.label)}</th>' for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.values.get(c.key)
            text = esc(f"{v:.{c.digits}f}" if c.digits is not None and _finite(v) and isinstance(v, float) else fmt(v))
            if r.name in best.get(c.key, ()):
                cells.append(f'<td class="best" title="best of the column ({esc(_HINT[c.better])})">{text} ★</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append(f'<tr{" class=ref" if r.reference else ""}><th>{esc(r.name)}</th>{"".join(cells)}</tr>')
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table class="metrics">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def kv_table(pairs: Sequence[tuple[str, object]], cls: str = "kv") -> str:
    return f'<table class="{cls}">' + "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>"
                                              for k, v in pairs) + "</table>"


# --------------------------------------------------------------------------- the page

class Section(NamedTuple):
    anchor: str
    title: str
    html: str


class Page(NamedTuple):
    """What :func:`write_html` wrote: where, its size, its sections' titles and its notes."""
    path: Path
    bytes: int
    sections: list[str]
    notes: list[str]


class Parts:
    """The page being assembled: its sections, its notes and the data its script reads."""

    def __init__(self):
        self.sections: list[Section] = []
        self.notes: list[str] = []
        self.charts: dict[str, dict] = {}
        self.trees: dict[str, list] = {}

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append(Section(anchor, title, body))


def summary_section(exp: Path, parts: Parts, cfg: dict | None, wall_time_s: float | None) -> None:
    from simtune.report_sources import data_counts, timings
    body = []
    if cfg:
        shown = [(k, cfg[k]) for k in KEY_SETTINGS if k in cfg and cfg[k] not in (None, [], "")]
        full = "\n".join(f"{k}: {v}" for k, v in cfg.items())
        body.append("<h3>Settings</h3>" + kv_table(shown) + f"<details><summary>the whole config.yaml ({len(cfg)} "
                    f"settings)</summary><pre>{esc(full)}</pre></details>")
    ts = timings(exp, wall_time_s, parts.notes)
    if ts:
        body.append("<h3>Timings</h3>" + '<table class="kv">' + "".join(
            f"<tr><th>{esc(t.what)}</th><td>{esc('-' if t.seconds is None else f'{t.seconds:.1f} s')}</td>"
            f"<td>{esc(t.detail)}</td></tr>" for t in ts) + "</table>")
    counts = data_counts(exp, cfg, parts.notes)
    if counts:
        body.append("<h3>Data</h3>" + "".join(f"<h4>{esc(c.source)}</h4>" + kv_table(list(c.values.items()))
                                              for c in counts))
    parts.add("summary", "Summary", '<div class="columns">' + "".join(f"<div>{b}</div>" for b in body) + "</div>"
              if body else '<p class="note">nothing to summarise</p>')


def curves_section(exp: Path, parts: Parts) -> float | None:
    """Loss, reward and learning rate; returns the metrics' wall time (for the summary)."""
    from simtune.report import non_finite_steps, read_metrics, reward_keys, series, summarize
    path = exp / "metrics.jsonl"
    if not path.is_file():
        parts.notes.append("no metrics.jsonl: no curves")
        return None
    records, stats = read_metrics(path)
    if not records:
        parts.notes.append("metrics.jsonl has no line with a step: no curves")
        return None
    s = summarize(records, stats)
    keys = list(s["metrics"])
    charts = [("loss", ["loss", "eval_loss"] + sorted(k for k in keys if k.endswith("_loss") and k != "eval_loss")),
              ("reward", ["reward"] + reward_keys(records)), ("learning rate", ["learning_rate"])]
    body = []
    for title, ks in charts:
        drawn = [Series(k, *series(records, k)) for k in ks]
        drawn = [d for d in drawn if d.ys]
        if not drawn:
            parts.notes.append(f"no {title} in metrics.jsonl: no {title} curve")
            continue
        cid = f"chart-{title.replace(' ', '-')}"
        chart = line_chart(cid, drawn)
        parts.charts[cid] = chart.data
        thin = ' <span class="note">(long: every k-th point drawn)</span>' if chart.thinned else ""
        body.append(f'<div class="chartbox"><h3>{esc(title)}{thin}</h3>{legend([d.name for d in drawn])}'
                    f'<div class="plotwrap">{chart.svg}<div class="tip" id="tip-{esc(cid)}"></div></div></div>')
    for k in keys:
        bad = non_finite_steps(records, k)
        if bad:
            parts.notes.append(f"{k} is not finite at {len(bad)} step(s), from step {bad[0][0]} (did the run "
                               "diverge?): those steps are not drawn")
    rows = [TableRow(k, {"first": m["first"], "last": m["last"], "min": m.get("min"), "max": m.get("max"),
                         "best": m.get("best"), "best_step": m.get("best_step")})
            for k, m in s["metrics"].items() if not k.startswith(("epoch",))]
    cols = [Column(c, c.replace("_", " "), None, None) for c in ("first", "last", "min", "max", "best", "best_step")]
    steps = s["steps"]
    body.append(f"<details><summary>every metric: first, last, best ({steps['records']} steps, "
                f"{steps['first']}..{steps['last']})</summary>{html_table(rows, cols, 'metric')}</details>")
    if body:
        parts.add("curves", "Curves", '<div class="charts">' + "".join(body[:-1]) + "</div>" + body[-1])
    return s["wall_time_s"]


def render(exp: str | os.PathLike) -> tuple[str, Parts]:
    """The page for the folder ``exp`` (its text, and the parts it was made of)."""
    from simtune import report_sections
    from simtune.report_sources import read_config
    exp = Path(exp)
    parts = Parts()
    cfg = read_config(exp, parts.notes)
    summary_at = len(parts.sections)
    wall = curves_section(exp, parts)
    summary_section(exp, parts, cfg, wall)
    parts.sections.insert(summary_at, parts.sections.pop())  # the summary first, though it needs the wall time
    report_sections.add_all(exp, parts, (cfg or {}).get("recipe"))
    return page_text(exp, parts), parts


def page_text(exp: Path, parts: Parts) -> str:
    nav = " · ".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in parts.sections)
    notes = ("<ul class=notes>" + "".join(f"<li>{esc(n)}</li>" for n in parts.notes) + "</ul>") if parts.notes else ""
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.html}</section>' for s in parts.sections)
    data = script_json({"charts": parts.charts, "trees": parts.trees})
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>simtune report: {esc(exp.name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>simtune report: {esc(exp.name)}</h1><p class=path>{esc(exp.resolve())}</p>"
            f"<nav>{nav}</nav>{notes}</header>{body}"
            f'<script type="application/json" id="page-data">{data}</script><script>{SCRIPT}</script></body></html>')


def write_html(exp: str | os.PathLike, path: str | os.PathLike | None = None) -> Page:
    """Write the page for ``exp`` to ``path`` (default ``<exp>/report.html``), atomically."""
    exp = Path(exp)
    path = Path(path) if path else exp / "report.html"
    check_apart({"--html": path}, {name: exp / name for name in ("metrics.jsonl", "config.yaml", "eval", "cascades",
                                                                 "samples", "final_model", "checkpoints")})
    text, parts = render(exp)
    atomic_write_text(path, text)
    return Page(path, len(text.encode("utf-8")), [s.title for s in parts.sections], parts.notes)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;margin:0 auto;max-width:1280px;
padding:0 18px 40px;background:#fff}
h1{font-size:22px;margin:16px 0 2px}h2{font-size:18px;border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:14px 0 6px}h4{font-size:13px;margin:10px 0 4px;color:#555}
.path{color:#777;font-size:12px;margin:0 0 6px;word-break:break-all}nav a{color:#1f5fa8}
ul.notes{background:#fcf8e3;border:1px solid #f0e1a1;padding:6px 10px 6px 28px;font-size:13px;color:#6b5a1e}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
table.metrics td{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#f4f4f4}
td.best{background:#dff3e4;font-weight:600}tr.ref th,tr.ref td{font-style:italic;color:#555;background:#fafafa}
caption{text-align:left;font-weight:600;padding:4px 0}
table.kv th{background:#f7f7f7;font-weight:500}table.kv td{max-width:640px;word-break:break-word}
.charts,.columns{display:flex;flex-wrap:wrap;gap:14px 28px}.columns>div{min-width:0;max-width:100%}.chartbox{flex:0 0 auto}
.plotwrap{position:relative}svg{display:block}
svg .plot{fill:#fcfcfc;stroke:#ccc}svg .grid{stroke:#eee}svg .tick{font-size:10px;fill:#666}
svg .cursor{stroke:#999;stroke-dasharray:3 3}
.legend{font-size:12px;margin:2px 0}.legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:-1px}
.tip{position:absolute;display:none;pointer-events:none;background:rgba(255,255,255,.95);border:1px solid #bbb;
border-radius:4px;padding:4px 7px;font-size:12px;white-space:nowrap;box-shadow:0 1px 4px rgba(0,0,0,.15)}
.pair{display:flex;gap:12px}.pair>div{flex:1 1 0;min-width:0;border:1px solid #e3e3e3;border-radius:4px;padding:6px}
.treebox{overflow:auto;max-height:460px}.treebox svg{margin:0 auto}svg.tree .edge{stroke-width:1.5}svg.tree .node{stroke:#fff;cursor:pointer}
svg.tree .node.on{stroke:#000;stroke-width:2}
.nodeinfo{min-height:1.5em;font-size:13px;background:#f7f7f7;padding:4px 8px;border-radius:4px;margin:6px 0;
white-space:pre-wrap;word-break:break-word}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px 8px;border-radius:4px;font-size:12.5px;
max-height:320px;overflow:auto}
tr.hit td,tr.hit th{background:#e3f5e8}tr.miss td,tr.miss th{background:#fff3dc}tr.fa td,tr.fa th{background:#fde6e6}
.example{border:1px solid #e3e3e3;border-radius:4px;padding:6px 10px;margin:10px 0}
.post{font-size:14px;background:#f3f6fb;padding:6px 8px;border-radius:4px;white-space:pre-wrap;word-break:break-word}
.note{color:#8a6d3b}td.text{text-align:left;max-width:420px;white-space:pre-wrap;word-break:break-word}
"""

SCRIPT = """
(function(){
var data=JSON.parse(document.getElementById('page-data').textContent);
var NS='http://www.w3.org/2000/svg';
function num(v){var a=Math.abs(v);return (a!==0&&(a>=1e5||a<1e-3))?v.toExponential(3):String(+v.toPrecision(4));}
function nearest(xs,x){var lo=0,hi=xs.length-1;while(hi-lo>1){var m=(lo+hi)>>1;if(xs[m]<x)lo=m;else hi=m;}
return Math.abs(xs[lo]-x)<=Math.abs(xs[hi]-x)?lo:hi;}
function local(svg,ev){var p=svg.createSVGPoint();p.x=ev.clientX;p.y=ev.clientY;
return p.matrixTransform(svg.getScreenCTM().inverse());}
document.querySelectorAll('svg.chart').forEach(function(svg){
var c=data.charts[svg.id];if(!c)return;var tip=document.getElementById('tip-'+svg.id);
var cur=svg.querySelector('.cursor');var b=c.box;
var dots=c.series.map(function(s){var e=document.createElementNS(NS,'circle');e.setAttribute('r','3.5');
e.setAttribute('fill',s.colour);e.setAttribute('visibility','hidden');svg.appendChild(e);return e;});
function px(x){return b[0]+(x-c.x[0])/(c.x[1]-c.x[0])*b[2];}
function py(y){return b[1]+(1-(y-c.y[0])/(c.y[1]-c.y[0]))*b[3];}
function hide(){tip.style.display='none';cur.setAttribute('visibility','hidden');
dots.forEach(function(d){d.setAttribute('visibility','hidden');});}
svg.addEventListener('mousemove',function(ev){var p=local(svg,ev);
if(p.x<b[0]||p.x>b[0]+b[2]){hide();return;}
var x=c.x[0]+(p.x-b[0])/b[2]*(c.x[1]-c.x[0]);tip.textContent='';
c.series.forEach(function(s,i){var k=nearest(s.xs,x);dots[i].setAttribute('cx',px(s.xs[k]));
dots[i].setAttribute('cy',py(s.ys[k]));dots[i].setAttribute('visibility','visible');
var row=document.createElement('div');var sw=document.createElement('span');sw.textContent='\\u25A0 ';
sw.style.color=s.colour;row.appendChild(sw);row.appendChild(document.createTextNode(s.name+' = '+num(s.ys[k])+
'  (step '+s.xs[k]+')'));tip.appendChild(row);});
cur.setAttribute('x1',p.x);cur.setAttribute('x2',p.x);cur.setAttribute('visibility','visible');
tip.style.display='block';var r=svg.getBoundingClientRect();var left=ev.clientX-r.left+14;
if(left+tip.offsetWidth>r.width)left=Math.max(0,ev.clientX-r.left-tip.offsetWidth-14);
tip.style.left=left+'px';tip.style.top=(ev.clientY-r.top+10)+'px';});
svg.addEventListener('mouseleave',hide);});
document.querySelectorAll('svg.tree').forEach(function(svg){
var nodes=data.trees[svg.id]||[];var info=document.getElementById('info-'+svg.id);var pinned=null;
function show(t){var n=nodes[+t.getAttribute('data-i')];if(!n||!info)return;
info.textContent=n.user+' \\u00b7 '+n.action+' (depth '+n.depth+')'+(n.text?': '+n.text:'');}
svg.addEventListener('mouseover',function(ev){var t=ev.target.closest('circle.node');if(t&&!pinned)show(t);});
svg.addEventListener('click',function(ev){var t=ev.target.closest('circle.node');if(!t)return;
if(pinned)pinned.classList.remove('on');pinned=(pinned===t)?null:t;if(pinned){t.classList.add('on');}show(t);});});
})();
"""
