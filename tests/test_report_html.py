"""report.html (simtune.report_html): the escapes and the best-row rule on known values; the page
of a small demo-shaped folder built here (social: eval, pools, cascades; reviews; math) with
hostile texts; a folder missing its optional files; and the page opened in headless Chromium
(marked ``browser``; it fails, never skips, when Chromium or Playwright is missing)."""
from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from simtune.report_html import Column, TableRow, best_rows, html_table, write_html
from simtune.report_svg import esc, flatten, script_json

SCRIPT_TEXT = "<script>alert(1)</script>"
IMG_TEXT = '"><img src=x onerror=alert(1)>'
POST = f"{SCRIPT_TEXT} big news about the match"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# --------------------------------------------------------------------------- escapes and the best row

def test_esc_and_script_json_leave_no_markup():
    assert esc(IMG_TEXT) == "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert esc(SCRIPT_TEXT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    obj = {"text": f"</script><!-- {IMG_TEXT} & \u2028", "n": [1, 2.5]}
    s = script_json(obj)
    assert not set("<>&") & set(s) and "\u2028" not in s
    assert json.loads(s) == obj


def test_best_rows_on_known_values():
    cols = [Column("f1", "F1", "max"), Column("msle", "MSLE", "min"), Column("ratio", "ratio", "one"),
            Column("n", "n", None), Column("valid", "valid", "max"), Column("only", "only", "max")]
    rows = [TableRow("a", {"f1": 0.5, "msle": 2.0, "ratio": 1.1, "n": 3, "valid": 1.0, "only": 0.2}),
            TableRow("b", {"f1": 0.7, "msle": 1.0, "ratio": 0.8, "n": 9, "valid": 1.0}),
            TableRow("c", {"f1": 0.7, "msle": 3.0, "ratio": None, "n": 1, "valid": 1.0}),
            TableRow("oracle", {"f1": 0.9, "msle": 0.1, "ratio": 1.0, "valid": 1.0, "only": 0.9}, reference=True)]
    assert best_rows(rows, cols) == {"f1": {"b", "c"}, "msle": {"b"}, "ratio": {"a"}}
    # "valid": every row ties, nothing beaten; "only": one competitor has a value; "n": no direction
    html = html_table(rows, cols)
    assert html.count('class="best"') == 4 and html.count("★") == 4
    assert re.search(r"<tr class=ref><th>oracle</th>", html)
    with pytest.raises(ValueError, match="unknown 'better'"):
        best_rows(rows, [Column("f1", "F1", "highest")])


# --------------------------------------------------------------------------- a demo-shaped folder

def real_record(root_id, user, text, reactions):
    nodes = [{"id": root_id, "user": user, "action": "post", "text": text, "time": 1_700_000_000, "parent": None,
              "depth": 0}]
    for k, (uid, action, txt, parent) in enumerate(reactions):
        nodes.append({"id": f"{root_id}-{k}", "user": uid, "action": action, "text": txt, "time": 1_700_000_100 + k,
                      "parent": root_id if parent is None else f"{root_id}-{parent}", "depth": 1 if parent is None else 2})
    return {"root_id": root_id, "root_time": 1_700_000_000, "nodes": nodes}


def sim_tree(user, text, children):
    return {"user": user, "action": "post", "text": text, "depth": 0,
            "children": [{"user": u, "action": a, "text": t, "depth": 1, "children": []} for u, a, t in children]}


def make_social_folder(root: Path) -> Path:
    """An experiment folder shaped as `simtune demo` leaves it, its samples and build beside."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simtune.recipes.social.evaluate import TABLE_COLUMNS
    from simtune.recipes.social.prompt import build_prompt, format_answer
    build, samples, exp = root / "build", root / "samples", root / "exp"
    for d in (build, samples, exp / "eval", exp / "cascades"):
        d.mkdir(parents=True)
    recs = [real_record("p1", "u1", POST, [("u2", "comment", IMG_TEXT, None), ("u3", "repost", "", None),
                                           ("u4", "comment", "so true", None), ("u5", "repost", "", 0)]),
            real_record("p2", "u2", "a quiet post", [("u1", "comment", "hi", None)])]
    (build / "trees.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (build / "summary.json").write_text(json.dumps({"counts": {"posts_in": 3, "posts_out": 2, "posts_rejected": 1},
                                                    "dropped": {"after_window": 4}}))
    (samples / "summary.json").write_text(json.dumps({"build_dir": str(build), "counts": {"samples_val": 2},
                                                      "skipped": {"pool_too_large": 0}}))
    cands = [("u2", f"likes football {IMG_TEXT}"), ("u3", "short and plain"), ("u6", "asks questions")]
    prompt = build_prompt(POST, "u1", cands)
    deeper = build_prompt(POST, "u1", cands[1:], chain=[{"user": "u2", "action": "comment", "text": IMG_TEXT}])
    rows = [{"sample_id": "p1:p1", "depth": 0, "prompt": prompt, "candidates": ["u2", "u3", "u6"],
             "true_users": ["u2", "u3"], "true_actions": ["comment", "repost"], "true_texts": [IMG_TEXT, ""]},
            {"sample_id": "p1:p1-0", "depth": 1, "prompt": deeper, "candidates": ["u3", "u6"], "true_users": ["u6"],
             "true_actions": ["repost"], "true_texts": [""]}]
    pq.write_table(pa.Table.from_pylist(rows), samples / "val.parquet")
    preds = [{"sample_id": "p1:p1", "completion": format_answer(["u2", "u6"], ["comment", "repost"],
                                                                [SCRIPT_TEXT, "ok"]), "scores": [0.9, 0.2, 0.6]},
             {"sample_id": "p1:p1-0", "completion": "[]", "scores": [0.1, 0.3]}]
    (exp / "eval" / "predictions.shard0-of-1.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    group = {k: 0.5 for k, _, _ in TABLE_COLUMNS}
    results = {name: {"0": {**group, "n": 1, "f1": f1}, "all": {**group, "n": 2, "f1": f1}}
               for name, f1 in (("model", 0.8), ("baseline: random", 0.3), ("baseline: profile", 0.6),
                                ("oracle (the rule that made the data)", 0.9))}
    (exp / "eval" / "eval_social.json").write_text(json.dumps({
        "split": "val", "n_samples": 2, "who": "scorer", "samples_dir": str(samples), "results": results,
        "speed": {"samples": 2, "samples_per_s": 0.5}, "notes": {"baselines": {"random": IMG_TEXT}}}))
    stats = {"size": 3, "depth": 1, "breadth": [3], "actions": {"comment": 2, "repost": 1}}
    real = {"size": 4, "depth": 2, "breadth": [3, 1], "actions": {"comment": 2, "repost": 2}}
    line = {"sample_id": "p1", "root_id": "p1", "universe": 5, "real": real, "sim": stats, "f1": 0.5,
            "truncated": False, "seconds": 1.0,
            "sim_tree": sim_tree("u1", POST, [("u2", "comment", SCRIPT_TEXT), ("u6", "repost", IMG_TEXT),
                                              ("u4", "comment", "nice")])}
    (exp / "cascades" / "cascades.shard0-of-1.jsonl").write_text(json.dumps(line) + "\n")
    summary = {"cascades": 1, "truncated": 0, "empty_universe": 0, "seconds_per_post": 1.0,
               "real": {"depth": 2.0, "breadth": [3.0, 1.0], "comment_share": 0.5, "median_size": 4},
               "model": {"median_ratio": 0.75, "msle": 0.05, "median": 3, "depth": 1.0, "breadth": [3.0],
                         "comment_share": 0.67, "who_f1": 0.5},
               "size baselines": {"mean size": {"median_ratio": 1.5, "msle": 0.2, "median": 6.0}},
               "who baselines": {"baseline: random": 0.1, "oracle (the rule that made the data)": 0.7}}
    (exp / "cascades" / "eval_cascades.json").write_text(json.dumps({"build_dir": str(build), "depth_limit": 2,
                                                                      "summary": summary}))
    (exp / "config.yaml").write_text(f"recipe: social\nrun_name: demo\nlearning_rate: 0.001\nsamples_dir: {samples}\n")
    (exp / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "time": 100.0 + s, "loss": 3.0 / s, "who_loss": 1.0 / s, "learning_rate": 1e-3 * s / 10}) + "\n"
        for s in range(1, 11)))
    (exp / "train_result.json").write_text(json.dumps({"global_step": 10, "train_runtime": 9.5}))
    (exp / "timings.json").write_text(json.dumps({"data": 1.0, "train": 9.5}))
    (exp / "data_summary.json").write_text(json.dumps({"train_pools": 8, "calibration_pools": 2}))
    return exp


def test_social_page_holds_the_folder_and_escapes_every_text(tmp_path):
    exp = make_social_folder(tmp_path)
    page = write_html(exp)
    text = page.path.read_text(encoding="utf-8")
    assert page.path == exp / "report.html" and page.bytes == len(text.encode())
    assert page.sections == ["Summary", "Curves", "Evaluation: who reacts, and how", "Evaluated samples",
                             "Cascades: simulated beside real"]
    assert page.notes == ["no reward in metrics.jsonl: no reward curve"]  # a who run has none
    assert SCRIPT_TEXT not in text and "<img" not in text and IMG_TEXT not in text
    assert esc(SCRIPT_TEXT) in text and esc(IMG_TEXT) in text
    assert text.count("<script") == 2  # the page's data and its script, nothing else
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    real = re.search(r'<svg class="tree" id="tree-0-real".*?</svg>', text).group(0)
    sim = re.search(r'<svg class="tree" id="tree-0-sim".*?</svg>', text).group(0)
    assert real.count('class="node"') == 5 and sim.count('class="node"') == 4
    # the pool: u2 chosen and real (hit), u3 real only (miss), u6 chosen only (false alarm)
    assert "1 hits, 1 misses, 1 false alarms" in text
    assert re.search(r'<tr class="hit"><th>u2</th>', text) and re.search(r'<tr class="fa"><th>u6</th>', text)
    # who-F1: the model is best; the oracle is a reference row, never marked
    assert re.search(r"<th>model</th>(<td[^>]*>[^<]*</td>){2}<td class=\"best\"[^>]*>0.800 ★", text)
    assert "posts_rejected" in text and "9.5 s" in text  # data counts and timings in the summary
    data = json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)</script>', text, re.S).group(1))
    assert [s["name"] for s in data["charts"]["chart-loss"]["series"]] == ["loss", "who_loss"]
    assert data["trees"]["tree-0-sim"][1]["text"] == SCRIPT_TEXT


def test_missing_optional_files_leave_notes_not_errors(tmp_path):
    exp = make_social_folder(tmp_path)
    shutil.rmtree(exp / "cascades")
    (exp / "eval" / "predictions.shard0-of-1.jsonl").unlink()
    (exp / "config.yaml").unlink()
    page = write_html(exp, tmp_path / "elsewhere.html")
    assert page.sections == ["Summary", "Curves", "Evaluation: who reacts, and how"]
    assert any("config.yaml" in n for n in page.notes)
    assert any("predictions" in n for n in page.notes)
    # the recipe is unknown without config.yaml: the absent cascades are not asked for
    assert not any("cascade" in n for n in page.notes)
    # a shard written before trees were kept: the real tree alone, and a note
    exp2 = make_social_folder(tmp_path / "old")
    shard = exp2 / "cascades" / "cascades.shard0-of-1.jsonl"
    line = json.loads(shard.read_text())
    del line["sim_tree"]
    shard.write_text(json.dumps(line) + "\n")
    shutil.rmtree(tmp_path / "old" / "build")
    page = write_html(exp2)
    assert any("no simulated tree" in n for n in page.notes) and any("trees.jsonl" in n for n in page.notes)
    assert 'id="tree-0-real"' not in page.path.read_text()
    # an evaluation of another shape (an older version's): that part is left out, with a note
    (exp2 / "eval" / "eval_social.json").write_text(json.dumps({"results": {"model": ["not", "a", "dict"]}}))
    page = write_html(exp2)
    assert "Evaluation: who reacts, and how" not in page.sections and "Cascades: simulated beside real" in page.sections
    assert any(n.startswith("the social eval part is left out") for n in page.notes)


def test_flatten_caps_a_large_tree_and_counts_the_rest():
    root = {"user": "r", "action": "post", "children": [{"user": str(i), "action": "repost"} for i in range(400)]}
    tree = flatten(root, limit=300)
    assert len(tree.nodes) == 300 and tree.left_out == 101 and tree.nodes[5].parent == 0


def test_report_command_writes_the_page_and_refuses_it_inside_the_report_folder(tmp_path, capsys):
    from simtune.cli import main
    exp = make_social_folder(tmp_path)
    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    assert (exp / "report" / "loss.png").is_file() and (exp / "report.html").is_file() and "report.html" in out
    assert main(["report", str(exp), "--html", str(exp / "report" / "page.html")]) == 2
    assert "--html" in capsys.readouterr().err


# --------------------------------------------------------------------------- reviews and math

def test_reviews_page_tables_and_examples(tmp_path):
    from simtune.recipes.reviews.commands import SYSTEM_RECENT, SYSTEM_SIMILAR
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    metrics = {"bleu": 5.0, "rouge1": 20.0, "rouge2": 5.0, "rougeL": 15.0, "mean_len": 12.0, "len_ratio": 0.9,
               "sentiment_corr": 0.1}
    systems = {"model": {**metrics, "rougeL": 18.0}, SYSTEM_RECENT: {**metrics, "len_ratio": 1.3},
               SYSTEM_SIMILAR: {**metrics, "rougeL": 16.0, "sentiment_corr": 0.3}}
    (run / "eval" / "eval_report.json").write_text(json.dumps({"n": 1, "split": "test", "systems": systems,
                                                              "reference": {"mean_len": 13.0, "sentiment_corr": 0.5}}))
    key = {"user_id": "u1", "film": "Film <b>", "timestamp": "2020-01-01"}
    (run / "eval" / "predictions.jsonl").write_text(json.dumps({
        **key, "rating": 4, "reference": "好看 真好看", "generated": f"好看 {SCRIPT_TEXT}",
        "baseline_recent": "无聊", "baseline_similar": "真好看"}) + "\n")
    (run / "test_samples.json").write_text(json.dumps([{**key, "prompt": "【该用户以往的短评】\n电影《A》: 不错"}]))
    (run / "config.yaml").write_text("recipe: reviews\n")
    text = write_html(run).path.read_text()
    assert re.search(r"<th>model</th>(<td[^>]*>[^<]*</td>){3}<td class=\"best\"[^>]*>18.00 ★", text)
    assert re.search(r"<th>model</th>(<td[^>]*>[^<]*</td>){5}<td class=\"best\"[^>]*>0.90 ★", text)  # len ratio
    assert "电影《A》: 不错" in text and esc("Film <b>") in text and SCRIPT_TEXT not in text
    assert "real reviews (ceiling)" in text and "<td>75.0</td>" in text  # the similar baseline's ROUGE-L x100


def test_an_ablation_folder_gets_the_page_alone(tmp_path, capsys):
    from simtune.cli import main
    from simtune.recipes.reviews.commands import SYSTEM_RECENT
    root = tmp_path / "ablation_x"
    root.mkdir()
    m = {"bleu": 1.0, "rouge1": 10.0, "rouge2": 2.0, "rougeL": 8.0, "mean_len": 10.0, "len_ratio": 1.0,
         "sentiment_corr": None}
    (root / "ablation.json").write_text(json.dumps({
        "variants": {"profile+history": {"n": 5}, "neither": {"n": 5}},
        "table": {"profile+history": {**m, "rougeL": 9.0}, "neither": m, SYSTEM_RECENT: {**m, "rougeL": 7.0}},
        "reference": {"mean_len": 11.0, "sentiment_corr": 0.3},
        "paired": {"profile+history - neither": {"diff": 1.0, "lo": -0.5, "hi": 2.5, "n": 5}}}))
    assert main(["report", str(root)]) == 0
    assert "the page alone" in capsys.readouterr().out
    text = (root / "report.html").read_text()
    assert not (root / "report").exists() and "Ablation: profile and history" in text
    assert re.search(r"<th>profile\+history</th>(<td[^>]*>[^<]*</td>){3}<td class=\"best\"[^>]*>9.00 ★", text)
    assert "too few pairs to tell" in text  # metrics.paired's verdict on 5 pairs


def test_math_page_accuracies_baselines_and_completions(tmp_path):
    run = tmp_path / "math"
    (run / "eval").mkdir(parents=True)
    (run / "samples").mkdir()
    result = {"model": str(run), "n": 2, "strict": 0.5, "exact": 0.5, "lenient": 1.0, "format_rate": 0.5,
              "mean_format_reward": 0.4, "baselines": {"majority_answer": "7", "majority_accuracy": 0.5,
                                                       "last_question_number_accuracy": 0.0}}
    (run / "eval" / "eval_math.json").write_text(json.dumps(result))
    rows = [{"question": f"2+5? {SCRIPT_TEXT}", "gold": "7", "completion": "<answer>7</answer>", "correctness": 2.0,
             "strict": True, "lenient": True, "format": 0.8}]
    (run / "eval" / "eval_math_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "samples" / "completions_step000010.jsonl").write_text(json.dumps({
        "step": 10, "prompt": [{"role": "user", "content": "1+1?"}], "completion": [{"role": "assistant",
                                                                                     "content": IMG_TEXT}],
        "rewards": {"math_correctness": 2.0}, "advantage": 0.5}) + "\n")
    (run / "config.yaml").write_text("recipe: math\n")
    page = write_html(run)
    text = page.path.read_text()
    assert page.sections == ["Summary", "Evaluation: math", "Completions with rewards"]
    assert any("metrics.jsonl" in n for n in page.notes)
    assert "baseline: always &#x27;7&#x27;" in text and "lenient accuracy (last number)" in text
    assert re.search(r"<th>math</th>(<td[^>]*>[^<]*</td>){2}<td class=\"best\"[^>]*>1.000 ★", text)
    assert "math_correctness" in text and esc(IMG_TEXT) in text and SCRIPT_TEXT not in text


# --------------------------------------------------------------------------- in a real browser

def chromium_page():
    """Playwright's sync API and Chromium's path; a clear failure (not a skip) when either is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's Chromium (`make browser`, or "
                    "`apt-get install chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[test]'` (or `make install`)")
    return sync_playwright


@pytest.mark.browser
def test_page_in_headless_chromium(tmp_path):
    from PIL import Image
    sync_playwright = chromium_page()
    exp = make_social_folder(tmp_path)
    url = write_html(exp).path.resolve().as_uri()
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            assert page.locator("#tree-0-real circle.node").count() == 5
            assert page.locator("#tree-0-sim circle.node").count() == 4
            # the hostile texts are on the page as text, and made no element
            assert page.get_by_text(SCRIPT_TEXT).count() >= 1 and page.get_by_text(IMG_TEXT).count() >= 1
            assert page.locator("img").count() == 0 and page.locator("script").count() == 2
            # a node's text on hover; a curve's value on hover
            page.hover("#tree-0-sim circle.node[data-i='1']")
            assert page.inner_text("#info-tree-0-sim") == f"u2 · comment (depth 1): {SCRIPT_TEXT}"
            page.hover("#chart-loss")  # its middle
            assert re.search(r"loss = [\d.]+ +\(step \d+\)", page.inner_text("#tip-chart-loss"))
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            png = page.screenshot()
        finally:
            browser.close()
    assert errors == []
    assert requests == [url], f"requests besides the page: {[r for r in requests if r != url]}"
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"
