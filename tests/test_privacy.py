"""Privacy (issue 19, round 2): "known synthetic" is proved by the file itself, CED outputs do
not keep the public file index, and @mentions in texts do not carry raw ids.

Each test drives the CLI (or the functions it calls) and imports nothing the fix added, so it
runs on the code before it, where each failed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from simtune.cli import main as cli
from testutils import synth_corpus

T0 = 1_700_000_000


def build(*argv: str) -> int:
    return cli(["data", "social", "build", "--progress", "false", *argv])


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def all_text(folder: Path) -> str:
    """Every file of an output folder as text (Parquet decoded)."""
    out = []
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".parquet":
            out.append(json.dumps(pq.read_table(f).to_pylist(), ensure_ascii=False, default=str))
        elif f.is_file() and f.suffix in (".jsonl", ".json"):
            out.append(f.read_text(encoding="utf-8"))
    return "\n".join(out)


# --------------------------------------------------------------------------- known synthetic

def test_real_data_beside_a_synthetic_corpus_is_pseudonymised(tmp_path):
    syn = synth_corpus(tmp_path / "syn")
    real = syn / "real.jsonl"  # real data copied into the synth folder
    real.write_text(json.dumps({"id": "9001", "user": {"id": "4242424242", "screen_name": "真名"},
                                "text_raw": "real post", "created_at": "Tue Nov 14 22:13:20 +0800 2023",
                                "comments": [{"id": "9002", "user": {"id": "5353535353"}, "text_raw": "hi",
                                              "created_at": "Tue Nov 14 22:14:20 +0800 2023"}]}) + "\n")
    assert build("--inputs", str(real), "--out", str(tmp_path / "b")) == 0
    assert summary(tmp_path / "b")["pseudonymized"] is True  # once: False (its folder's summary.json said synth)
    assert "4242424242" not in all_text(tmp_path / "b") and "真名" not in all_text(tmp_path / "b")
    # the synthetic file itself is still known synthetic; once changed, it is not
    assert build("--inputs", str(syn / "posts.jsonl"), "--out", str(tmp_path / "c")) == 0
    assert summary(tmp_path / "c")["pseudonymized"] is False
    with open(syn / "posts.jsonl", "a", encoding="utf-8") as fh:
        fh.write(real.read_text(encoding="utf-8"))
    assert build("--inputs", str(syn / "posts.jsonl"), "--out", str(tmp_path / "d")) == 0
    assert summary(tmp_path / "d")["pseudonymized"] is True


# --------------------------------------------------------------------------- CED file index

def ced_folder(root: Path) -> Path:
    for sub in ("original-microblog", "rumor-repost", "non-rumor-repost"):
        (root / sub).mkdir(parents=True)
    for idx, mid, uid in (("100", "3557577890123456", "1234567890"), ("101", "3557577890654321", "1987654321")):
        name = f"{idx}_{mid}_{uid}.json"
        (root / "original-microblog" / name).write_text(json.dumps({"text": "谣言?", "time": 1_451_613_600}))
        (root / "rumor-repost" / name).write_text(json.dumps(
            [{"mid": f"7{mid[1:]}", "uid": "2222222222", "parent": "", "text": "转发", "date": "2016-01-01 10:30:00"}]))
    return root


def test_ced_outputs_do_not_keep_the_public_file_index(tmp_path):
    ced = ced_folder(tmp_path / "ced")
    out = tmp_path / "b"
    assert build("--ced_dir", str(ced), "--out", str(out)) == 0
    trees = [orjson.loads(x) for x in (out / "trees.jsonl").read_bytes().splitlines()]
    assert len(trees) == 2
    for t in trees:
        for k in ("file", "root_file"):
            stem = Path(t[k]).stem
            assert not stem.startswith(("100_", "101_")), t[k]  # once: 100_p_…_u_…
            assert stem == f"{t['root_id']}_{t['nodes'][0]['user']}"
    text = all_text(out)
    assert "100_" not in text and "101_" not in text and "1234567890" not in text


# --------------------------------------------------------------------------- @mentions

def test_mentions_in_weibo_texts_are_scrubbed_by_default(tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({
        "id": "9001", "user": {"id": "4242424242", "screen_name": "Alice"},
        "text_raw": "hello @Bob and @陌生人 write to a@b.com", "created_at": "Tue Nov 14 22:13:20 +0800 2023",
        "comments": [{"id": "9002", "user": {"id": "5353535353", "screen_name": "Bob"}, "text_raw": "@Alice 你好",
                      "created_at": "Tue Nov 14 22:14:20 +0800 2023"},
                     {"id": "9003", "user": {"id": "6464646464"}, "text_raw": "no date"}]},  # rejected: no fast path
        ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "b"
    assert build("--inputs", str(posts), "--out", str(out)) == 0  # once: no such option, texts as written
    t = orjson.loads((out / "trees.jsonl").read_bytes().splitlines()[0])
    root, reply = t["nodes"]
    assert summary(out)["rejected_by_reason"] == {"missing_field": 1}
    assert root["text"] == f"hello @{reply['user']} and @[someone] write to a@b.com"
    assert reply["text"] == f"@{root['user']} 你好"
    text = all_text(out)
    assert "@Bob" not in text and "@Alice" not in text and "陌生人" not in text
    assert summary(out)["mentions"] == {"scrubbed": True, "to_user": 2, "to_placeholder": 1}
    # off when asked (and by default for a synthetic corpus)
    assert build("--inputs", str(posts), "--out", str(tmp_path / "c"), "--scrub_mentions", "false") == 0
    assert "@Bob" in (tmp_path / "c" / "trees.jsonl").read_text(encoding="utf-8")


def test_mentions_in_douban_reviews_are_scrubbed_by_default(tmp_path):
    from simtune.recipes.reviews.commands import load_config, prepare

    folder = tmp_path / "douban"
    (folder / "details").mkdir(parents=True)
    (folder / "info.csv").write_text("id,name\n1,甲片\n2,乙片\n", encoding="utf-8")
    head = "seen,username,id,time,location,votes,star,comment\n"
    for film in (1, 2):
        rows = [f"1,昵称{i},rawuser{i},2022-0{film}-0{i + 1} 10:00:00,,1,30,同意@昵称{(i + 1) % 3} 和 @路人甲\n"
                for i in range(3)]
        (folder / "details" / f"{film}.csv").write_text(head + "".join(rows), encoding="utf-8")
    cfg = load_config(["--data_path", str(folder), "--output_dir", str(tmp_path / "run"), "--min_reviews", "2"])
    corpus = prepare(cfg, None, tmp_path / "rej.jsonl").corpus
    assert len(corpus.reviews) == 6
    for r in corpus.reviews:  # once: "同意@昵称1 和 @路人甲"
        assert "昵称" not in r.text and "路人甲" not in r.text and "@[someone]" in r.text
        mentioned = r.text.split("@")[1].split(" ")[0]
        assert mentioned in corpus.users and mentioned != r.user_id
