"""The recipe parts of the HTML report page (:mod:`simtune.report_html`): each adds its
sections to the page when the folder has their files, and, for the folder's own recipe
(config.yaml's ``recipe``), a one-line note when it does not.

- social: the who/reaction tables per depth (every baseline, the oracle as a reference row),
  a few evaluated pools (scores, choices, hits / misses / false alarms), the cascade table
  and a few simulated cascades drawn beside the real ones;
- reviews: the evaluation table (and the ablation's, per variant), a few test reviews: the
  prompt with the user's earlier reviews, the real review, the model's and the baselines'
  with their ROUGE-L;
- math: strict / exact / lenient / format beside the no-model baselines, a few scored
  completions;
- any GRPO run: the latest logged completions with their rewards.
"""
from __future__ import annotations

from pathlib import Path

from simtune.report_html import Column, Parts, TableRow, html_table, kv_table
from simtune.report_sources import (POOL_LINES, cascade_views, completions, first_found, load_json, math_examples,
                                    math_results, review_examples, social_examples)
from simtune.report_svg import MAX_TREE_NODES, esc, fmt, tree_data, tree_legend, tree_svg


def add_all(exp: Path, parts: Parts, recipe: str | None) -> None:
    """Each recipe part whose files the folder has. A file of another shape than this code
    writes (an older run's) leaves that part out with a note, as a missing one does."""
    from simtune.io import DataError
    for part, expected in ((social_eval, recipe == "social"), (social_cascades, recipe == "social"),
                           (reviews, recipe == "reviews"), (math, recipe == "math"), (grpo_completions, None)):
        try:
            part(exp, parts, expected) if expected is not None else part(exp, parts)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, DataError) as e:
            parts.notes.append(f"the {part.__name__.replace('_', ' ')} part is left out: its files are not as "
                               f"this version writes them ({type(e).__name__}: {e})")


def paired_html(pairs: dict, what: str) -> str:
    """A ``metrics.paired`` table: each difference, its interval and whether it is real."""
    from simtune.metrics.paired import verdict
    if not pairs:
        return ""
    rows = "".join(f"<tr><th>{esc(name)}</th><td>{esc(fmt(r.get('diff'), 3))}</td>"
                   f"<td>[{esc(fmt(r.get('lo'), 3))}, {esc(fmt(r.get('hi'), 3))}]</td><td>{esc(verdict(r))}</td></tr>"
                   for name, r in pairs.items() if isinstance(r, dict))
    return (f"<h3>{esc(what)}</h3><table><thead><tr><th>difference (paired, x100)</th><th>mean</th>"
            f"<th>95% interval</th><th>real?</th></tr></thead><tbody>{rows}</tbody></table>")


# --------------------------------------------------------------------------- social

def social_eval(exp: Path, parts: Parts, expected: bool) -> None:
    from simtune.recipes.social.evaluate import TABLE_COLUMNS
    rep = load_json(exp, "eval/eval_social.json", parts.notes,
                    "no who/reaction evaluation (`simtune eval social --out <run>/eval`)" if expected else None)
    if not isinstance(rep, dict) or not rep.get("results"):
        return
    results = rep["results"]
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise TypeError("eval/eval_social.json: 'results' is not {answerer: {depth group: metrics}}")
    cols = [Column(k, label, better, 2 if k == "mean_pred_users" else 3) for k, label, better in TABLE_COLUMNS]
    body = [f"<p>{esc(rep.get('n_samples', '?'))} {esc(rep.get('split', ''))} samples; who by "
            f"{esc(rep.get('who', '?'))}. The best value of each column is marked ★; the oracle (the rule that made "
            "synthetic data) is a reference row, not a competitor.</p>"]
    for g in next(iter(results.values())):
        rows = [TableRow(name, res[g], reference=name.startswith("oracle")) for name, res in results.items()
                if isinstance(res, dict) and g in res]
        n = rows[0].values.get("n", "?") if rows else "?"
        body.append(html_table(rows, cols, caption=f"{'all depths' if g == 'all' else f'depth {g}'} (n = {n})"))
    body.append(paired_html(rep.get("paired") or {}, "who-F1, paired over the same samples"))
    base = (rep.get("notes") or {}).get("baselines") or {}
    if base:
        body.append("<details><summary>what each baseline does</summary><ul>" + "".join(
            f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in base.items()) + "</ul></details>")
    parts.add("social-eval", "Evaluation: who reacts, and how", "".join(body))
    examples = social_examples(exp, rep, parts.notes)
    if examples:
        parts.add("social-samples", "Evaluated samples", "".join(_pool_html(e) for e in examples))


_OUTCOME_CLASS = {"hit": "hit", "miss": "miss", "false alarm": "fa"}


def _pool_html(e) -> str:
    counts = {o: sum(p.outcome == o for p in e.pool) for o in ("hit", "miss", "false alarm")}
    chain = "".join(f"<div>&gt; {esc(c.get('user'))} {esc(c.get('action'))}: {esc(c.get('text'))}</div>"
                    for c in e.chain)
    rows = "".join(
        f'<tr class="{_OUTCOME_CLASS.get(p.outcome, "")}"><th>{esc(p.user)}</th><td class=text>{esc(p.line)}</td>'
        f"<td>{esc(fmt(p.score, 3))}</td><td>{'yes' if p.chosen else ''}</td><td>{'yes' if p.true else ''}</td>"
        f"<td>{esc(p.outcome)}</td><td class=text>{esc(p.model_says)}</td><td class=text>{esc(p.real_says)}</td></tr>"
        for p in e.pool)
    more = (f'<p class="note">{e.hidden} more candidates with lower scores, neither chosen nor real, not shown '
            f"(the best {POOL_LINES} are)</p>") if e.hidden else ""
    return (f'<div class="example"><h3>sample {esc(e.sample_id)} · depth {e.depth} · {counts["hit"]} hits, '
            f'{counts["miss"]} misses, {counts["false alarm"]} false alarms</h3>'
            f'<div class="post"><b>{esc(e.author)}</b>: {esc(e.post)}{chain}</div>'
            "<table class=pool><thead><tr><th>candidate</th><th>candidate line</th><th>score</th><th>model chose</th>"
            "<th>reacted</th><th>outcome</th><th>model's reaction</th><th>real reaction</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{more}</div>")


def social_cascades(exp: Path, parts: Parts, expected: bool) -> None:
    rep = load_json(exp, "cascades/eval_cascades.json", parts.notes,
                    "no cascade simulation (`simtune eval social --cascades true`)" if expected else None)
    if not isinstance(rep, dict) or not isinstance(rep.get("summary"), dict):
        return
    s = rep["summary"]
    m, real = s.get("model") or {}, s.get("real") or {}
    levels = max(len(m.get("breadth") or []), len(real.get("breadth") or []))

    def shape(d, size_key):
        out = {"median": d.get(size_key), "depth": d.get("depth"), "comment_share": d.get("comment_share")}
        out.update({f"b{i}": v for i, v in enumerate(d.get("breadth") or [])})
        return out

    rows = [TableRow("model", {**shape(m, "median"), "median_ratio": m.get("median_ratio"), "msle": m.get("msle")})]
    rows += [TableRow(f"baseline: {n}", v) for n, v in (s.get("size baselines") or {}).items()]
    rows.append(TableRow("real", shape(real, "median_size"), reference=True))
    cols = [Column("median_ratio", "size: median simulated/real", "one"), Column("msle", "size: MSLE", "min"),
            Column("median", "size: median"), Column("depth", "depth (mean)"),
            *[Column(f"b{i}", f"breadth at depth {i + 1} (mean)") for i in range(levels)],
            Column("comment_share", "comment share")]
    who = [TableRow("model", {"f1": m.get("who_f1")})] + [
        TableRow(n, {"f1": v}, reference=n.startswith("oracle")) for n, v in (s.get("who baselines") or {}).items()]
    body = [f"<p>{esc(s.get('cascades'))} held-out posts simulated out of everyone to depth "
            f"{esc(rep.get('depth_limit'))}; {esc(s.get('truncated'))} truncated, {esc(s.get('empty_universe'))} with "
            f"nobody active before the post; {esc(fmt(s.get('seconds_per_post'), 3))} s per post.</p>",
            html_table(rows, cols, caption="size and shape"),
            html_table(who, [Column("f1", "who-F1 at depth 0, out of the universe", "max")]),
            paired_html(s.get("who_paired") or {}, "who-F1 paired over the same posts")]
    for k, v in enumerate(cascade_views(exp, rep, parts.notes)):
        body.append(_cascade_html(k, v, parts))
    parts.add("cascades", "Cascades: simulated beside real", "".join(body))


def _cascade_html(k: int, v, parts: Parts) -> str:
    sides = []
    for side, tree in (("simulated", v.sim), ("real", v.real)):
        tid = f"tree-{k}-{'sim' if side == 'simulated' else 'real'}"
        if tree is None:
            sides.append(f'<div><h4>{side}</h4><p class="note">not at hand (see the notes at the top)</p></div>')
            continue
        parts.trees[tid] = tree_data(tree)
        cut = (f'<p class="note">{tree.left_out} more nodes not drawn (the first {MAX_TREE_NODES}, breadth first)</p>'
               if tree.left_out else "")
        sides.append(f"<div><h4>{side}: {len(tree.nodes) + tree.left_out - 1} reactions</h4>{tree_legend()}"
                     f'<div class="treebox">{tree_svg(tree, tid)}</div>{cut}'
                     f'<div class="nodeinfo" id="info-{tid}">hover or click a node to read it</div></div>')
    levels = max(len(v.sim_stats.get("breadth") or []), len(v.real_stats.get("breadth") or []))
    cols = [Column("size", "size"), Column("depth", "depth"),
            *[Column(f"b{i}", f"breadth at depth {i + 1}") for i in range(levels)],
            Column("comment", "comments"), Column("repost", "reposts")]

    def row(name, st):
        acts = st.get("actions") or {}
        return TableRow(name, {"size": st.get("size"), "depth": st.get("depth"), "comment": acts.get("comment", 0),
                               "repost": acts.get("repost", 0),
                               **{f"b{i}": b for i, b in enumerate(st.get("breadth") or [])}})
    table = html_table([row("simulated", v.sim_stats), row("real", v.real_stats)], cols, "cascade")
    root = (v.real or v.sim).nodes[0] if (v.real or v.sim) and (v.real or v.sim).nodes else None
    post = f'<div class="post"><b>{esc(root.user)}</b>: {esc(root.text)}</div>' if root else ""
    f1 = "-" if v.f1 is None else f"{v.f1:.3f}"
    return (f'<div class="example"><h3>post {esc(v.root_id)} · who-F1 at depth 0: {esc(f1)}'
            f"{' · truncated' if v.truncated else ''}</h3>{post}<div class=pair>{''.join(sides)}</div>{table}</div>")


# --------------------------------------------------------------------------- reviews

# which value is best in each column of reviews.evaluate.METRIC_COLUMNS
REVIEW_BETTER = {"bleu": "max", "rouge1": "max", "rouge2": "max", "rougeL": "max", "mean_len": None,
                 "len_ratio": "one", "sentiment_corr": "max"}


def _review_rows(systems: dict, reference: dict | None) -> list[TableRow]:
    rows = [TableRow(n, m) for n, m in systems.items() if isinstance(m, dict)]
    if isinstance(reference, dict):
        rows.append(TableRow("real reviews (ceiling)", {"mean_len": reference.get("mean_len"), "len_ratio": 1.0,
                                                        "sentiment_corr": reference.get("sentiment_corr")}, True))
    return rows


def reviews(exp: Path, parts: Parts, expected: bool) -> None:
    from simtune.recipes.reviews.evaluate import METRIC_COLUMNS
    cols = [Column(k, label, REVIEW_BETTER[k], 2) for k, label in METRIC_COLUMNS]
    rel = first_found(exp, ["eval/eval_report.json", "eval_report.json"])
    if rel is None and expected:
        parts.notes.append("no eval/eval_report.json: no review evaluation (`simtune eval reviews --run <run>`)")
    rep = load_json(exp, rel, parts.notes) if rel else None
    if isinstance(rep, dict) and isinstance(rep.get("systems"), dict):
        body = [f"<p>{esc(rep.get('n'))} {esc(rep.get('split', 'test'))} reviews; BLEU and ROUGE x100 on characters. "
                "The best value of each column is marked ★.</p>",
                html_table(_review_rows(rep["systems"], rep.get("reference")), cols, "system"),
                paired_html(rep.get("paired") or {}, "the model against each baseline, paired")]
        examples = review_examples(exp, (exp / rel).parent, rep.get("split", "test"), parts.notes)
        for e in examples:
            rows = "".join(f"<tr><th>{esc(r.who)}</th><td class=text>{esc(r.text)}</td>"
                           f"<td>{esc('-' if r.rouge_l is None else f'{100 * r.rouge_l:.1f}')}</td></tr>"
                           for r in e.replies)
            prompt = (f"<details open><summary>the prompt: profile, the user's earlier reviews, the request</summary>"
                      f"<pre>{esc(e.prompt)}</pre></details>") if e.prompt else ""
            body.append(f'<div class="example"><h3>《{esc(e.film)}》 {esc(e.timestamp)} · rating '
                        f"{esc(fmt(e.rating))}</h3>{prompt}<table><thead><tr><th>who</th><th>review</th>"
                        f"<th>ROUGE-L x100</th></tr></thead><tbody>{rows}</tbody></table></div>")
        parts.add("reviews", "Evaluation: reviews", "".join(body))
    abl = load_json(exp, "ablation.json", parts.notes)
    if isinstance(abl, dict) and isinstance(abl.get("table"), dict):
        variants = abl.get("variants") or {}
        body = [f"<p>Each variant trained and evaluated on the same {esc(next(iter(variants.values()), {}).get('n', '?'))} "
                "test reviews; the baselines need no model.</p>",
                html_table(_review_rows(abl["table"], abl.get("reference")), cols, "variant or baseline"),
                paired_html(abl.get("paired") or {}, "what history and profile add (ROUGE-L, paired)")]
        parts.add("ablation", "Ablation: profile and history", "".join(body))


# --------------------------------------------------------------------------- math

def math(exp: Path, parts: Parts, expected: bool) -> None:
    from simtune.recipes.math.evaluate import METRIC_ROWS
    where, results = math_results(exp)
    if where is None:
        if expected:
            parts.notes.append("no eval_math.json in the folder or its eval/: no math evaluation "
                               "(`simtune eval math --model <run> --out <run>/eval`)")
        return
    if not results:
        parts.notes.append(f"the math evaluation in {where}/ could not be read: left out")
        return
    rows = [TableRow(Path(str(r.get("model", "?"))).name or str(r.get("model")), r) for r in results]
    b = results[-1].get("baselines") or {}
    if b:  # a no-model answer is the number alone: strict, exact and lenient at once; it has no format
        for name, key in ((f"baseline: always {b.get('majority_answer')!r}", "majority_accuracy"),
                          ("baseline: last number of the question", "last_question_number_accuracy")):
            rows.append(TableRow(name, {k: b.get(key) for k in ("strict", "exact", "lenient")}))
    cols = [Column(k, desc, "max", 3) for k, desc in METRIC_ROWS]
    body = [f"<p>{esc(', '.join(str(r.get('n', '?')) for r in results))} problems. Accuracies are shares (0-1); "
            "the best value of each column is marked ★.</p>", html_table(rows, cols, "model")]
    for r in math_examples(exp / where, parts.notes):
        facts = [(k, r.get(k)) for k in ("gold", "correctness", "strict", "lenient", "format")]
        body.append(f'<div class="example"><h3>{"right" if r.get("lenient") else "wrong"} (gold {esc(r.get("gold"))})'
                    f'</h3><div class="post">{esc(r.get("question"))}</div><pre>{esc(r.get("completion"))}</pre>'
                    f"{kv_table(facts)}</div>")
    parts.add("math", "Evaluation: math", "".join(body))


def grpo_completions(exp: Path, parts: Parts) -> None:
    name, rows = completions(exp)
    if not rows:
        return
    body = [f"<p>The first {len(rows)} of samples/{esc(name)} (the latest logged step).</p>"]
    for r in rows:
        rewards = [(k, v) for k, v in (r.get("rewards") or {}).items()] + [("advantage", r.get("advantage"))]
        prompt = r.get("prompt")
        prompt = prompt if isinstance(prompt, str) else "\n".join(
            f"{m.get('role')}: {m.get('content')}" for m in prompt or [] if isinstance(m, dict))
        completion = r.get("completion")
        completion = completion if isinstance(completion, str) else "\n".join(
            str(m.get("content")) for m in completion or [] if isinstance(m, dict))
        body.append(f'<div class="example"><h3>step {esc(r.get("step"))}</h3><details><summary>prompt</summary>'
                    f"<pre>{esc(prompt)}</pre></details><pre>{esc(completion)}</pre>{kv_table(rewards)}</div>")
    parts.add("completions", "Completions with rewards", "".join(body))
