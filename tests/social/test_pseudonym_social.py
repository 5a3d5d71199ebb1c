"""Pseudonymised user and post ids through the social data chain (build -> samples ->
grpo), on the synthetic corpus and on real CED cascades: no raw user id, screen name or post
id in any output file, every id replaced by its HMAC-SHA256 everywhere, trees and users
otherwise unchanged, and the same samples (same nodes, reactors, splits, targets); only the
noise users drawn differ, since each tree's draws are seeded by its (pseudonymised) root id."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from simtune.config import ConfigError
from simtune.pseudonym import SALT_ENV
from simtune.recipes.social.commands import (SocialBuildConfig, SocialGRPOConfig, SocialSamplesConfig,
                                             SocialSynthConfig, run_build, run_grpo, run_samples, run_synth)

SALT_A = "test salt A, not a secret 0001"
SALT_B = "test salt B, not a secret 0002"
WORD = re.compile(r"[0-9A-Za-z]+")


def pseudo(salt: str, raw: str) -> str:
    return "u_" + hmac.new(salt.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def post_pseudo(salt: str, raw: str) -> str:
    """A post id as written; an id made up for an item without one (``<root>/c1``) keeps
    its suffix after the root's pseudonym."""
    head, sep, tail = raw.partition("/")
    return "p_" + hmac.new(salt.encode(), b"post\0" + head.encode(), hashlib.sha256).hexdigest()[:16] + sep + tail


def folder_text(folder: Path) -> str:
    """Every file below ``folder`` as text: Parquet tables as JSON rows, the rest decoded
    (activity.npz holds numbers only, which is checked)."""
    parts = []
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if f.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(f).to_pylist(), ensure_ascii=False))
        elif f.suffix == ".npz":
            with np.load(f) as z:
                assert all(z[k].dtype.kind in "iuf" for k in z.files), f
        else:
            parts.append(f.read_bytes().decode("utf-8"))
    return "\n".join(parts)


def leaked(folder: Path, raw: set[str]) -> list[str]:
    return sorted(set(WORD.findall(folder_text(folder))) & raw)


def chain(root: Path, inputs, profiles=None, ced_dir=None, ced_limit=None, **pz) -> Path:
    run_build(SocialBuildConfig.load(None, [], inputs=inputs, profiles=profiles, ced_dir=ced_dir, ced_limit=ced_limit,
                                     out=str(root / "build"), progress=False, **pz))
    run_samples(SocialSamplesConfig.load(None, [], build_dir=str(root / "build"), out=str(root / "samples"),
                                         max_depth=3, train_share=0.5, val_share=0.5, progress=False))
    run_grpo(SocialGRPOConfig.load(None, [], samples_dir=str(root / "samples"), out=str(root / "grpo"), progress=False))
    return root


def salt_file(d: Path, salt: str) -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / "salt").write_text(salt + "\n")
    os.chmod(d / "salt", 0o600)
    return str(d / "salt")


# --------------------------------------------------------------------------- same results, ids replaced

def _map_words(text: str, m: dict[str, str]) -> str:
    return WORD.sub(lambda t: m.get(t.group(0), t.group(0)), text)


def _map_children(nodes: list, m: dict[str, str], mp) -> list:
    return [{**n, "id": mp(n["id"]), "user": m[n["user"]], "children": _map_children(n["children"], m, mp)}
            for n in nodes]


def _mapped_tree(t: dict, m: dict[str, str], mp) -> dict:
    out = {**t, "root_id": mp(t["root_id"]),
           "nodes": [{**n, "id": mp(n["id"]), "parent": None if n["parent"] is None else mp(n["parent"]),
                      "user": m[n["user"]]} for n in t["nodes"]]}
    for k in ("file", "root_file"):  # CED: <index>_<mid>_<author id>.json -> <p_mid>_<u_uid>.json (no index)
        if k in t and t["source"] == "ced":
            f = Path(t[k])
            idx, mid, uid = f.stem.rsplit("_", 2)
            out[k] = str(f.with_name(f"{mp(mid)}_{m[uid]}{f.suffix}"))
    return out


def _same_sample(r: dict, q: dict, m: dict[str, str], mp) -> None:
    """One sample row (or GRPO row) of the raw run and of the pseudonymised run: the same
    node, reactors, actions, texts, split and subtree; the candidates hold the same true
    users (the noise users are drawn anew: the tree's generator is seeded by its root id)."""
    assert q["root_id"] == mp(r["root_id"]) and q["node_id"] == mp(r["node_id"])
    assert q["sample_id"] == f"{q['root_id']}:{q['node_id']}"
    for k in ("depth", "split", "time", "root_potential", "subtree_size"):
        assert q[k] == r[k], k
    if "node_user" in r:
        assert q["node_user"] == m[r["node_user"]]
    want = sorted(zip((m[u] for u in r["true_users"]), r["true_actions"], r["true_texts"]))
    assert sorted(zip(q["true_users"], q["true_actions"], q["true_texts"])) == want
    assert set(q["true_users"]) <= set(q["candidates"])
    assert all(u.startswith("u_") for u in q["candidates"])
    key = lambda c: c["id"]  # noqa: E731
    assert sorted(json.loads(q["children"]), key=key) == sorted(_map_children(json.loads(r["children"]), m, mp), key=key)
    if "response" in r:
        assert sorted(json.loads(q["response"]), key=lambda a: a["user"]) == sorted(
            ({**a, "user": m[a["user"]]} for a in json.loads(r["response"])), key=lambda a: a["user"])


def assert_same_apart_from_ids(raw: Path, pz: Path, salt: str) -> dict[str, str]:
    """The pseudonymised chain equals the raw one with every user id u replaced by
    pseudo(salt, u) and every post id by post_pseudo(salt, id): trees, users, activity;
    every sample and GRPO row the same apart from the noise users drawn. Returns the user map."""
    users_raw = pq.read_table(raw / "build/users.parquet").to_pylist()
    users_pz = pq.read_table(pz / "build/users.parquet").to_pylist()
    m = {u["user_id"]: pseudo(salt, u["user_id"]) for u in users_raw}
    assert len(set(m.values())) == len(m)
    def mp(x: str) -> str:
        return post_pseudo(salt, x)
    for a, b in zip(users_raw, users_pz, strict=True):
        prof = json.loads(a["profile"]) if a["profile"] else None
        if prof and "screen_name" in prof:
            prof["screen_name"] = pseudo(salt, prof["screen_name"])
        assert {**b, "profile": None} == {**a, "user_id": m[a["user_id"]], "profile": None}
        assert (json.loads(b["profile"]) if b["profile"] else None) == prof
    with np.load(raw / "build/activity.npz") as za, np.load(pz / "build/activity.npz") as zb:
        assert all(np.array_equal(za[k], zb[k]) for k in za.files)
    trees_raw = [orjson.loads(x) for x in (raw / "build/trees.jsonl").read_bytes().splitlines()]
    trees_pz = [orjson.loads(x) for x in (pz / "build/trees.jsonl").read_bytes().splitlines()]
    assert [_mapped_tree(t, m, mp) for t in trees_raw] == trees_pz and trees_pz
    for step in ("samples", "grpo"):
        sa, sb = (json.loads((d / step / "summary.json").read_text()) for d in (raw, pz))
        assert sa["counts"] == sb["counts"]
        for f in sorted((raw / step).glob("*.parquet")):
            ra, rb = pq.read_table(f).to_pylist(), pq.read_table(pz / step / f.name).to_pylist()
            assert len(ra) == len(rb)
            for r, q in zip(ra, rb):
                _same_sample(r, q, m, mp)
    assert sum(len(pq.read_table(f)) for f in (pz / "samples").glob("*.parquet")) > 0
    sa, sb = (json.loads((d / "build/summary.json").read_text()) for d in (raw, pz))
    assert sa["counts"] == sb["counts"] and sa["rejected_by_reason"] == sb["rejected_by_reason"]
    assert sb["pseudonymized"] is True and sa["pseudonymized"] is False
    return m


# --------------------------------------------------------------------------- synthetic corpus

def _raw_ids(posts: Path, profiles: Path) -> set[str]:
    """Every user id, screen name and post/comment/repost id in the corpus, read without simtune."""
    ids: set[str] = set()

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("user"), dict):
                ids.add(str(o["user"]["id"]))
                if o.get("id") is not None:  # a post's, comment's or repost's own id
                    ids.add(str(o["id"]))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    for line in posts.read_text().splitlines():
        walk(json.loads(line))
    for uid, p in json.loads(profiles.read_text()).items():
        ids.update({uid, p["screen_name"]})
    return ids


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("pz_synth")
    run_synth(SocialSynthConfig.load(None, [], out=str(d / "raw"), users=60, posts=50, seed=3))
    inp, prof = [str(d / "raw/posts.jsonl")], str(d / "raw/profiles.json")
    return {"dir": d, "raw_ids": _raw_ids(d / "raw/posts.jsonl", d / "raw/profiles.json"),
            "plain": chain(d / "plain", inp, prof, pseudonymize=False),
            "a": chain(d / "a", inp, prof, pseudonymize=True, salt_file=salt_file(d / "keys_a", SALT_A)),
            "b": chain(d / "b", inp, prof, pseudonymize=True, salt_file=salt_file(d / "keys_b", SALT_B)),
            "inputs": (inp, prof)}


def test_synthetic_no_raw_id_or_name_in_any_output(synth):
    assert len(synth["raw_ids"]) > 100
    assert leaked(synth["plain"], synth["raw_ids"])  # the check finds them where they are
    for run in ("a", "b"):
        assert leaked(synth[run], synth["raw_ids"]) == []


def test_synthetic_every_id_is_its_hmac_everywhere_and_results_are_unchanged(synth):
    m = assert_same_apart_from_ids(synth["plain"], synth["a"], SALT_A)
    assert set(m) <= synth["raw_ids"]


def test_same_salt_agrees_different_salt_differs_salt_never_written(synth, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT_A)  # the same salt from the environment: the same outputs
    inp, prof = synth["inputs"]
    env = chain(tmp_path / "env", inp, prof, pseudonymize=True)
    for f in ("build/trees.jsonl", "build/users.parquet", "samples/train.parquet", "grpo/val.parquet"):
        assert (env / f).read_bytes() == (synth["a"] / f).read_bytes(), f
    ua, ub = (set(pq.read_table(synth[r] / "build/users.parquet").column("user_id").to_pylist()) for r in ("a", "b"))
    assert len(ua) == len(ub) and not ua & ub
    fa, fb, fe = (json.loads((d / "build/summary.json").read_text())["salt_fingerprint"] for d in (synth["a"], synth["b"], env))
    assert fa == fe != fb
    for run, salt in (("a", SALT_A), ("b", SALT_B)):
        text = folder_text(synth[run])
        assert salt not in text and salt.encode() not in b"".join(
            f.read_bytes() for f in synth[run].rglob("*") if f.is_file())


def test_salt_file_is_created_0600_with_a_message_and_reused(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    inp, prof = synth["inputs"]
    key = tmp_path / "secret" / "salt"
    cfg = dict(inputs=inp, profiles=prof, progress=False, pseudonymize=True, salt_file=str(key))
    run_build(SocialBuildConfig.load(None, [], out=str(tmp_path / "b1"), **cfg))
    assert f"wrote a new random pseudonymisation salt to {key}" in capsys.readouterr().err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    run_build(SocialBuildConfig.load(None, [], out=str(tmp_path / "b2"), **cfg))
    assert "wrote a new" not in capsys.readouterr().err
    assert (tmp_path / "b1/trees.jsonl").read_bytes() == (tmp_path / "b2/trees.jsonl").read_bytes()
    salt = key.read_text().strip()
    users = pq.read_table(tmp_path / "b1/users.parquet").column("user_id").to_pylist()
    raw_first = pq.read_table(synth["plain"] / "build/users.parquet").column("user_id").to_pylist()
    assert users == [pseudo(salt, u) for u in raw_first]
    assert salt not in folder_text(tmp_path / "b1")
    # the salt may not live in the output folder, and a short one is refused
    with pytest.raises(ConfigError, match=r"'salt_file' .* is inside the output folder"):
        run_build(SocialBuildConfig.load(None, [], out=str(tmp_path / "b3"), **{**cfg, "salt_file": str(tmp_path / "b3/salt")}))
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        run_build(SocialBuildConfig.load(None, [], out=str(tmp_path / "b4"), **{**cfg, "salt_file": str(tmp_path / "short")}))


def test_auto_is_off_for_the_synthetic_corpus_and_on_for_other_inputs(synth, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT_A)
    inp, prof = synth["inputs"]
    s = run_build(SocialBuildConfig.load(None, [], inputs=inp, profiles=prof, out=str(tmp_path / "s"), progress=False))
    assert s["pseudonymized"] is False
    copy = tmp_path / "copy.jsonl"  # the same posts, no longer marked as synthetic
    copy.write_bytes(Path(inp[0]).read_bytes())
    s = run_build(SocialBuildConfig.load(None, [], inputs=[str(copy)], out=str(tmp_path / "r"), progress=False))
    assert s["pseudonymized"] is True
    assert leaked(tmp_path / "r", synth["raw_ids"]) == []


# --------------------------------------------------------------------------- CED (real data)

def _ced_raw_ids(ced: Path, n: int) -> set[str]:
    """Every user id and post id (mid, parent) of the first n cascades, read without simtune."""
    ids = set()
    for root in sorted((ced / "original-microblog").glob("*.json"), key=lambda p: p.name)[:n]:
        ids.update(root.stem.split("_")[-2:])  # the root's mid and its author's id
        for sub in ("rumor-repost", "non-rumor-repost"):
            if (ced / sub / root.name).is_file():
                for o in json.loads((ced / sub / root.name).read_text()):
                    if isinstance(o, dict):
                        ids.update(str(o[k]) for k in ("uid", "mid", "parent") if o.get(k) not in (None, ""))
    return ids


@pytest.mark.shared_data
def test_ced_cascades_pseudonymised(shared_data, tmp_path):
    ced = shared_data / "weibo-ced"
    raw_ids = _ced_raw_ids(ced, 4)
    plain = chain(tmp_path / "plain", [], ced_dir=str(ced), ced_limit=4, pseudonymize=False)
    a = chain(tmp_path / "a", [], ced_dir=str(ced), ced_limit=4, salt_file=salt_file(tmp_path / "k", SALT_A))  # auto: on
    assert len(raw_ids) > 50 and leaked(plain, raw_ids)
    assert leaked(a, raw_ids) == []
    assert SALT_A not in folder_text(a)
    m = assert_same_apart_from_ids(plain, a, SALT_A)
    assert set(m) <= raw_ids and len(m) > 50
    trees = [orjson.loads(x) for x in (a / "build/trees.jsonl").read_bytes().splitlines()]
    # <p_mid>_<u_uid>.json: the public file index is left out (it leads back to the raw mid and uid)
    assert all(Path(t[k]).stem == f"{t['root_id']}_{t['nodes'][0]['user']}" for t in trees for k in ("root_file", "file"))
    assert max(n["depth"] for t in trees for n in t["nodes"]) > 1


def test_pseudonymize_values():
    for text, want in (("auto", "auto"), ("yes", True), ("false", False)):
        assert SocialBuildConfig.load(None, ["--pseudonymize", text]).pseudonymize == want
    with pytest.raises(ConfigError, match=r"^command line: 'pseudonymize' must be true or false or one of \['auto'\]"):
        SocialBuildConfig.load(None, ["--pseudonymize", "maybe"])
