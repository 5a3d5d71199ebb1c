"""Pseudonymised user ids in the review recipe: the shipped example and the real Douban data.
A run folder (data splits, test samples, training config, preview, rejects, baseline
evaluation) holds no raw user id or name; every one is HMAC-SHA256(salt, id); the samples
are otherwise those of a run without pseudonyms."""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
from pathlib import Path

import pytest

from simtune.pseudonym import SALT_ENV
from simtune.recipes.reviews.commands import evaluate_run, load_config, prepare, print_inspect, write_run_files
from simtune.recipes.reviews.ingest import EXAMPLE_PATH

SALT_A = "review test salt A, not a secret"
SALT_B = "review test salt B, not a secret"
PZ = re.compile(r"^u_[0-9a-f]{16}$")


def pseudo(salt: str, raw: str) -> str:
    return "u_" + hmac.new(salt.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def run(root: Path, data: str, *argv: str) -> tuple[Path, str, object]:
    """What `data reviews build` writes (without a tokenizer), the baselines' evaluation and the
    printed report; returns (run folder, report text, Prepared)."""
    cfg = load_config(["--data_path", data, "--output_dir", str(root), *argv])
    prep = prepare(cfg, None, root / "rejects.jsonl")
    write_run_files(root, cfg, prep, None)
    evaluate_run(root, baselines_only=True)
    buf = io.StringIO()
    print_inspect(prep, 3, buf)
    return root, buf.getvalue(), prep


def all_text(root: Path) -> str:
    return "\n".join(f.read_text(encoding="utf-8") for f in sorted(root.rglob("*")) if f.is_file())


def rows(root: Path) -> list[dict]:
    return [json.loads(x) for s in ("train", "val", "test") for x in (root / "data" / f"{s}.jsonl").read_text().splitlines()]


def test_example_pseudonymised_everywhere_and_otherwise_unchanged(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    names = [u["user"]["profile"]["name"] for u in json.loads(EXAMPLE_PATH.read_text(encoding="utf-8"))]
    (tmp_path / "k").write_text(SALT_A)
    plain, _, _ = run(tmp_path / "plain", "example")  # auto: the shipped example keeps its invented names
    a, report, prep = run(tmp_path / "a", "example", "--pseudonymize", "true", "--salt_file", str(tmp_path / "k"))
    assert all(n in all_text(plain) for n in names)
    text = all_text(a) + report
    assert [n for n in names if n in text] == [] and SALT_A not in text
    assert "user ids: pseudonymised" in report and prep.summary()["pseudonymized"] is True
    m = {n: pseudo(SALT_A, n) for n in names}  # the JSON form's id is the profile name
    want = []
    for r in rows(plain):
        p = r["prompt"]
        for n, u in m.items():
            p = p.replace(f"名字: {n}", f"名字: {u}")
        want.append({**r, "user_id": m[r["user_id"]], "prompt": p})
    assert rows(a) == want and len(want) == 30
    ts_plain = json.loads((plain / "test_samples.json").read_text())
    ts_a = json.loads((a / "test_samples.json").read_text())
    assert [{**t, "user_id": m[t["user_id"]], "prompt": None} for t in ts_plain] == [{**t, "prompt": None} for t in ts_a]
    preds = [json.loads(x) for x in (a / "eval/predictions.jsonl").read_text().splitlines()]
    assert {p["user_id"] for p in preds} == {m[t["user_id"]] for t in ts_plain}
    ev_plain, ev_a = (json.loads((d / "eval/eval_report.json").read_text()) for d in (plain, a))
    assert ev_plain["systems"] == ev_a["systems"]


def test_example_same_salt_agrees_other_salt_differs(tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT_A)
    (tmp_path / "k").write_text(SALT_A)
    a, _, _ = run(tmp_path / "a", "example", "--pseudonymize", "true")  # salt from the environment
    a2, _, _ = run(tmp_path / "a2", "example", "--pseudonymize", "true", "--salt_file", str(tmp_path / "k"))
    monkeypatch.setenv(SALT_ENV, SALT_B)
    b, _, _ = run(tmp_path / "b", "example", "--pseudonymize", "true")
    for s in ("train", "val", "test"):
        assert (a / "data" / f"{s}.jsonl").read_bytes() == (a2 / "data" / f"{s}.jsonl").read_bytes()
    ua, ub = ({r["user_id"] for r in rows(d)} for d in (a, b))
    assert len(ua) == len(ub) == 3 and not ua & ub and all(PZ.match(u) for u in ua | ub)
    fp = [json.loads((d / "training_config.json").read_text())["data"]["salt_fingerprint"] for d in (a, a2, b)]
    assert fp[0] == fp[1] != fp[2]
    assert SALT_B not in all_text(b) and SALT_A not in all_text(a)


@pytest.mark.shared_data
def test_douban_user_keys_never_reach_the_run_folder(shared_data, tmp_path):
    folder = shared_data / "douban-2022films"
    keys, words = set(), set()
    tok = re.compile(r"[0-9A-Za-z._-]+")
    for f in (folder / "details").glob("*.csv"):  # read without simtune
        with open(f, newline="", encoding="utf-8-sig") as fh:
            for r in csv.DictReader(fh):
                keys.add(r["id"].strip())
                words.update(tok.findall(f"{r['comment']} {r['location']}"))
    keys.discard("")
    a, report, prep = run(tmp_path / "a", str(folder), "--salt_file", str(tmp_path / "salt"))  # auto: on
    kept = {r["user_id"] for r in rows(a)}
    assert len(kept) >= 100 and all(PZ.match(u) for u in kept)
    checkable = keys - words  # a key that is also a word of some review cannot be told apart
    found = set(tok.findall(all_text(a) + report)) & checkable
    assert len(checkable) > 8000 and found == set()
    plain, _, _ = run(tmp_path / "plain", str(folder), "--pseudonymize", "false")
    assert len(set(tok.findall(all_text(plain))) & checkable) >= 100  # where the keys are, the check finds them
    salt = (tmp_path / "salt").read_text().strip()
    assert salt not in all_text(a) + report
    assert {pseudo(salt, k) for k in keys} >= kept
