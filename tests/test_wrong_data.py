"""Silent loss and wrong data (issue 19, round 2): each finding as it was reported must not
happen again.

The tests drive the commands as a user does (the CLI, or the functions the CLI calls;
nothing added by the fix is imported here, so the file runs on the code before it, where
every test failed). The rules that fix them: `simtune.io` (DateRange), the social
`ingest`/`samples` checks, the Douban reader's per-row checks, `simtune.report`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from simtune.cli import main as cli
from testutils import run_bounded

T0 = 1_700_000_000  # 2023-11-14 22:13 UTC


def weibo_time(t: int) -> str:
    from simtune.recipes.social.schema import format_weibo_time
    return format_weibo_time(t)


def created_at(t):
    """A plausible unix time in the Weibo form; anything else as it is."""
    return weibo_time(t) if isinstance(t, int) and 10 ** 9 <= t <= 4 * 10 ** 9 else t


def item(iid, uid, t, text="hi", **kw) -> dict:
    return {"id": iid, "user": {"id": uid}, "text_raw": text, "created_at": created_at(t), **kw}


def post(pid, uid, t, comments=(), reposts=(), text="root post") -> dict:
    return {"id": pid, "user": {"id": uid}, "text_raw": text, "created_at": created_at(t),
            "comments": list(comments), "reposts": list(reposts)}


def write_lines(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def build(tmp_path: Path, records, *argv: str, name: str = "b") -> tuple[int, Path]:
    src = write_lines(tmp_path / f"{name}.jsonl", records)
    out = tmp_path / f"{name}_build"
    rc = cli(["data", "social", "build", "--inputs", str(src), "--out", str(out), "--progress", "false",
              "--pseudonymize", "false", *argv])
    return rc, out


def samples(build_dir: Path, out: Path, *argv: str) -> int:
    return cli(["data", "social", "samples", "--build_dir", str(build_dir), "--out", str(out), "--progress", "false",
                *argv])


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def rejects(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


def trees(folder: Path) -> list[dict]:
    return [orjson.loads(x) for x in (folder / "trees.jsonl").read_bytes().splitlines()]


def sample_rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


# --------------------------------------------------------------------------- 1. Douban: an unclosed quote

HEADER = "seen,username,id,time,location,votes,star,comment\n"


def douban_folder(root: Path) -> Path:
    """Ten users with two reviews each; film 1's row of user 2 opens a quote it never closes,
    and the row of user 8 ends with one (so csv reads lines 4-10 as one row of 8 fields)."""
    (root / "details").mkdir(parents=True)
    (root / "info.csv").write_text("id,name\n1,甲片\n2,乙片\n", encoding="utf-8")
    for film in (1, 2):
        rows = []
        for i in range(10):
            text = f"第{film}部片的评论{i}"
            if film == 1 and i == 2:
                text = '"开头有引号却没有结束'
            if film == 1 and i == 8:
                text = '他说"好"'
            rows.append(f"1,昵称{i},rawuser{i},2022-0{film}-0{1 + i % 9} 10:00:00,北京,3,40,{text}\n")
        (root / "details" / f"{film}.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    return root


def test_1_douban_an_unclosed_quote_never_merges_reviews(tmp_path):
    from simtune.recipes.reviews.commands import load_config, prepare, write_run_files

    folder = douban_folder(tmp_path / "douban")
    run = tmp_path / "run"
    cfg = load_config(["--data_path", str(folder), "--output_dir", str(run), "--min_reviews", "2"])
    prep = prepare(cfg, None, run / "rejects.jsonl")
    write_run_files(run, cfg, prep, None)
    corpus = prep.corpus
    # once: 20 rows, 14 kept, none rejected; 6 reviews vanished into user 2's
    assert corpus.records_in == 20 == len(corpus.reviews) + corpus.rejects.total
    bad = [json.loads(x) for x in (run / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((Path(r["file"]).name, r["line"]) for r in bad) == [("1.csv", n) for n in range(4, 11)]
    assert "lines 4-10" in bad[0]["reason"]
    assert all(len(r.text) < 20 for r in corpus.reviews)  # no review holds other rows
    text = "".join((run / "data" / f"{s}.jsonl").read_text(encoding="utf-8") for s in ("train", "val", "test"))
    assert "rawuser" not in text and "昵称" not in text  # pseudonymised: no raw key or name anywhere


# --------------------------------------------------------------------------- 2. deep reply chains

@pytest.mark.parametrize("levels", [127, 5000])
def test_2_a_deep_reply_chain_makes_its_samples(tmp_path, levels):
    chain = [item(f"c{i}", f"u{i % 40}", T0 + i + 1, f"reply {i}", parent=f"c{i - 1}" if i else "p1")
             for i in range(levels)]
    rc, b = build(tmp_path, [post("p1", "u0", T0, comments=chain), post("p2", "u1", T0 + 9, [item("x", "u2", T0 + 10)])])
    assert rc == 0 and summary(b)["counts"]["interactions_out"] == levels + 1
    assert samples(b, tmp_path / "s", "--max_depth", "3", "--train_share", "1", "--val_share", "0") == 0
    s = summary(tmp_path / "s")
    assert s["counts"]["trees_rejected"] == 0  # once: bad_tree: TypeError: Recursion limit reached, exit 0
    rows = [r for r in sample_rows(tmp_path / "s") if r["root_id"] == "p1"]
    assert sorted(r["depth"] for r in rows) == [0, 1, 2, 3]
    for r in rows:
        kids = json.loads(r["children"])
        assert [k["id"] for k in kids] == [f"c{r['depth']}"]


# --------------------------------------------------------------------------- 3. CED: an unreadable repost list

def ced_folder(root: Path, list_bytes: bytes) -> Path:
    for sub in ("original-microblog", "rumor-repost", "non-rumor-repost"):
        (root / sub).mkdir(parents=True)
    name = "100_m1_42.json"
    (root / "original-microblog" / name).write_text(json.dumps({"text": "谣言?", "time": 1_451_613_600}))
    (root / "rumor-repost" / name).write_bytes(list_bytes)
    good = "101_m2_43.json"
    (root / "original-microblog" / good).write_text(json.dumps({"text": "真的", "time": 1_451_613_600}))
    (root / "rumor-repost" / good).write_text(json.dumps(
        [{"mid": "r1", "uid": "44", "parent": "", "text": "", "date": "2016-01-01 10:30:00"}]))
    return root


@pytest.mark.parametrize("list_bytes", [b'[{"mid": "r1", "uid": "7", "par', b'{"not": "a list"}'])
def test_3_a_ced_root_whose_repost_list_cannot_be_read_is_rejected(tmp_path, list_bytes):
    ced = ced_folder(tmp_path / "ced", list_bytes)
    out = tmp_path / "b"
    assert cli(["data", "social", "build", "--ced_dir", str(ced), "--out", str(out), "--progress", "false",
                "--pseudonymize", "false"]) == 0
    c = summary(out)["counts"]
    assert c["posts_in"] == 2 and c["posts_out"] == 1 and c["posts_rejected"] == 1 and c["list_files_rejected"] == 1
    assert [t["root_id"] for t in trees(out)] == ["m2"]  # once: m1 kept as a tree with no reactions
    assert any(r["reason"].startswith("list_rejected") and r["line"] == 1 for r in rejects(out))
    # and so no false "nobody reacts" sample for it
    assert samples(out, tmp_path / "s", "--leaf_share", "1", "--train_share", "1", "--val_share", "0") == 0
    assert all(r["root_id"] != "m1" for r in sample_rows(tmp_path / "s"))


# --------------------------------------------------------------------------- 4. trees.jsonl edited by hand

def _edited_build(tmp_path: Path, edit) -> tuple[Path, list[dict]]:
    rc, b = build(tmp_path, [post("p1", "u0", T0, [item("a", "u1", T0 + 1, "to the root", comments=[
        item("b", "u2", T0 + 2, "to a")]), item("c", "u3", T0 + 3, "to the root too")]),
        post("p2", "u4", T0 + 50, [item("d", "u5", T0 + 51)])])
    assert rc == 0
    lines = (b / "trees.jsonl").read_bytes().splitlines()
    t = orjson.loads(lines[0])
    edit(t["nodes"])
    (b / "trees.jsonl").write_bytes(orjson.dumps(t) + b"\n" + lines[1] + b"\n")
    # in a child process with 2 GiB and 60 s at most: on the code before the fix, a node that is
    # its own parent made `samples` grow without end (17 GB before it was stopped)
    r = run_bounded(["data", "social", "samples", "--build_dir", str(b), "--out", str(tmp_path / "s"), "--progress",
                     "false", "--max_depth", "2", "--train_share", "1", "--val_share", "0"])
    assert r.returncode == 0, r.stderr[-1500:]
    return tmp_path / "s", sample_rows(tmp_path / "s")


def test_4_a_duplicated_node_id_is_rejected(tmp_path):
    def dup(nodes):  # "c" renamed "a": b's parent "a" is now ambiguous
        next(n for n in nodes if n["id"] == "c")["id"] = "a"
    s, rows = _edited_build(tmp_path, dup)
    assert summary(s)["counts"]["trees_rejected"] == 1  # once: b shown as a reply to the second "a"
    assert [r["reason"] for r in rejects(s)][0].startswith("bad_tree") and rejects(s)[0]["line"] == 1
    assert {r["root_id"] for r in rows} == {"p2"}


def test_4_a_node_that_is_its_own_parent_is_rejected(tmp_path):
    def own(nodes):
        next(n for n in nodes if n["id"] == "c")["parent"] = "c"
    s, rows = _edited_build(tmp_path, own)
    assert summary(s)["counts"]["trees_rejected"] == 1  # once: none, and the root's sample lost "c" silently
    assert {r["root_id"] for r in rows} == {"p2"}


# --------------------------------------------------------------------------- 5. --id_map values

@pytest.mark.parametrize("value", [None, ["x"], "", True, 1.5])
def test_5_id_map_values_are_checked(tmp_path, value, capsys):
    idm = tmp_path / "idmap.json"
    idm.write_text(json.dumps({"u0": "main_account", "u1": value}))
    rc, out = build(tmp_path, [post("p1", "u0", T0, [item("a", "u1", T0 + 1)])], "--id_map", str(idm))
    assert rc == 2 and not out.exists()  # once: user "None", "['x']", "" or "True"
    err = capsys.readouterr().err
    assert str(idm) in err and "entry 2" in err and "u1" not in err


# --------------------------------------------------------------------------- 6. split shares

@pytest.mark.parametrize("shares", [["--train_share", "0.5", "--val_share", "0.2"],
                                    ["--test_share", "0.1"]])
def test_6_split_shares_that_do_not_add_up_to_one_are_an_error(tmp_path, shares, capsys):
    rc, b = build(tmp_path, [post("p1", "u0", T0, [item("a", "u1", T0 + 1)])])
    assert samples(b, tmp_path / "s", *shares) == 2  # once: rescaled silently (0.5 + 0.2 gave 73/27)
    assert "must be 1" in capsys.readouterr().err and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- 7. implausible dates

@pytest.mark.parametrize("when", [10 ** 20, "9999-12-31 10:00:00", 0, "1970-01-02 00:00:00"])
def test_7_implausible_social_dates_are_rejected(tmp_path, when):
    rc, b = build(tmp_path, [post("p1", "u0", when, [item("a", "u1", T0 + 1)]),
                             post("p2", "u0", T0, [item("b", "u1", T0 + 1), item("c", "u2", when)])])
    assert rc == 0
    s = summary(b)
    assert s["counts"]["posts_out"] == 1 and s["counts"]["interactions_out"] == 1  # once: both kept
    assert s["rejected_by_reason"] == {"bad_date": 2}
    assert [n["id"] for t in trees(b) for n in t["nodes"]] == ["p2", "b"]


def test_7_the_accepted_dates_are_an_option(tmp_path):
    old = T0 - 20 * 365 * 86400  # 2003
    rc, b = build(tmp_path, [post("p1", "u0", old, [item("a", "u1", old + 1)])], "--first_date", "2000-01-01")
    assert rc == 0 and summary(b)["counts"]["posts_out"] == 1
    rc, b = build(tmp_path, [post("p1", "u0", T0, [item("a", "u1", T0 + 1)])], "--last_date", "2020-12-31", name="c")
    assert rc == 0 and summary(b)["rejected_by_reason"] == {"bad_date": 1}


@pytest.mark.parametrize("when", ["2099-05-01 10:00:00", "1970-01-01 08:00:00"])
def test_7_implausible_review_dates_are_rejected(tmp_path, when):
    from simtune.recipes.reviews.commands import load_config, prepare

    folder = tmp_path / "douban"
    (folder / "details").mkdir(parents=True)
    (folder / "info.csv").write_text("id,name\n1,甲片\n2,乙片\n", encoding="utf-8")
    for film in (1, 2):
        rows = [f"1,n{i},user{i},2022-0{film}-0{i + 1} 10:00:00,,1,30,评论{i}\n" for i in range(3)]
        if film == 1:
            rows.append(f"1,n9,user9,{when},,1,30,日期不对的评论\n")
        (folder / "details" / f"{film}.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    cfg = load_config(["--data_path", str(folder), "--output_dir", str(tmp_path / "run"), "--min_reviews", "2"])
    prep = prepare(cfg, None, tmp_path / "rej.jsonl")
    assert len(prep.corpus.reviews) == 6 and prep.corpus.rejects.total == 1  # once: kept
    bad = json.loads((tmp_path / "rej.jsonl").read_text(encoding="utf-8"))
    assert bad["line"] == 5 and "outside the accepted dates" in bad["reason"] and bad["field"] == "time"


# --------------------------------------------------------------------------- 8. report: a diverged run

def test_8_report_shows_and_flags_non_finite_metrics(tmp_path, capsys):
    exp = tmp_path / "run"
    exp.mkdir()
    (exp / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n'
                                       '{"step": 3, "loss": NaN}\n{"step": 4, "loss": Infinity}\n')
    assert cli(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    s = json.loads((exp / "report" / "summary.json").read_text())  # strict JSON: no NaN in it
    loss = s["metrics"]["loss"]
    assert loss["last"] == "inf" and loss["last_step"] == 4  # once: "loss last 1.0"
    assert loss["non_finite"] == {"n": 2, "first_step": 3, "values": ["inf", "nan"]}
    assert s["non_finite"]["loss"]["first_step"] == 3
    assert "last inf" in out and "WARNING" in out and "loss" in out.split("WARNING")[1].splitlines()[0]
    assert not math.isnan(loss["min"]) and loss["min"] == 1.0
