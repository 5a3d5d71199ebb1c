"""Who-joins cascade files (`uid time,uid time,...`): ingest, behaviour in the candidate
line, no leakage from the future."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from simtune.io import DataError
from simtune.recipes.social.commands import SocialBuildConfig, SocialSamplesConfig, run_build, run_samples
from simtune.recipes.social.data.build import build_trees
from simtune.recipes.social.samples import SampleMaker
from simtune.recipes.social.user_table import UserTable

T0 = 1_284_967_588


def _write(path: Path, cascades: list[list[tuple[str, int]]], float_times: bool = False) -> Path:
    fmt = (lambda t: f"{t:.9e}".replace("e+09", "e+9")) if float_times else str
    path.write_text("".join(",".join(f"{u} {fmt(t)}" for u, t in c) + ",\n" for c in cascades))
    return path


def _build(tmp_path: Path, files: list[Path], name: str = "build", **kw) -> tuple[dict, Path]:
    out = tmp_path / name
    s = build_trees(inputs=[], profiles=None, id_map=None, ced_dir=None, ced_limit=None, out_dir=str(out),
                    window_seconds=kw.pop("window_seconds", 30 * 86400), strict=kw.pop("strict", False),
                    progress=False, diffusion=[str(f) for f in files], **kw)
    return s, out


def _trees(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "trees.jsonl").read_text().splitlines()]


def test_a_cascade_line_becomes_a_post_with_depth_one_reposts(tmp_path):
    f = tmp_path / "twitter" / "cascades.txt"
    f.parent.mkdir()
    f.write_text("11 1.284967588e+9,22 1.28496759e+9,33 1284967600,\n\n44 1284967700\n")
    s, out = _build(tmp_path, [f])
    t = _trees(out)
    assert [x["root_id"] for x in t] == ["twitter-1", "twitter-3"]
    n = t[0]["nodes"]
    assert [(x["user"], x["action"], x["text"], x["time"], x["depth"]) for x in n] == [
        ("11", "post", "", 1284967588, 0), ("22", "repost", "", 1284967590, 1), ("33", "repost", "", 1284967600, 1)]
    assert all(x["parent"] == "twitter-1" for x in n[1:])
    assert t[1]["nodes"] == [{"id": "twitter-3", "user": "44", "action": "post", "text": "", "time": 1284967700,
                              "parent": None, "depth": 0}]
    assert s["counts"]["posts_out"] == 2 and s["counts"]["interactions_out"] == 2


@pytest.mark.parametrize("line, reason", [
    ("1 T,2", "odd_fields"), ("1 T,2 3 4", "odd_fields"), ("1 T,2 soon", "bad_date"),
    ("1 T,2 nan", "bad_date"), ("1 T,2 1e300", "bad_date"), ("1 T,2 100", "bad_date"),
    ("1 U,2 T", "out_of_order"), ("1 T,2 U,1 V", "user_twice"), ("1 T,2 U,2 V", "user_twice")])
def test_a_bad_line_is_rejected_with_its_line_and_reason(tmp_path, line, reason):
    line = line.replace("T", str(T0)).replace("U", str(T0 + 5)).replace("V", str(T0 + 9))
    f = tmp_path / "c.txt"
    f.write_text(f"7 {T0},8 {T0 + 1}\n{line}\n9 {T0 + 2},8 {T0 + 3}\n")
    s, out = _build(tmp_path, [f])
    assert [x["root_id"] for x in _trees(out)] == [f"{tmp_path.name}-1", f"{tmp_path.name}-3"]
    rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"].split(":")[0]) for r in rej] == [(str(f), 2, reason)]
    assert s["counts"]["posts_rejected"] == 1 and s["counts"]["interactions_rejected_with_post"] == line.count(",")
    with pytest.raises(DataError, match=f"c.txt:2.*{reason}"):
        _build(tmp_path, [f], name="strict", strict=True)


def test_diffusion_dates_default_to_doubans_opening(tmp_path):
    """first_date 'auto': a 2008 Douban cascade is kept (Weibo's 2009 bound would reject it), 2004 is not."""
    from simtune.io import DateRange

    f = _write(tmp_path / "c.txt", [[("1", 1_210_000_000), ("2", 1_210_000_100)], [("3", 1_090_000_000)]])
    cfg = SocialBuildConfig.load(None, [], diffusion=[str(f)], out=str(tmp_path / "b"), progress=False)
    assert cfg.dates() == DateRange.parse("2005-03-01", "today")
    s = run_build(cfg)
    assert s["counts"]["posts_out"] == 1 and s["rejected_by_reason"] == {"bad_date": 1}


def test_diffusion_ids_are_pseudonymised_by_default(tmp_path):
    f = _write(tmp_path / "c.txt", [[("12345", T0), ("67890", T0 + 5)]])
    cfg = SocialBuildConfig.load(None, [], diffusion=[str(f)], out=str(tmp_path / "b"), progress=False)
    s = run_build(cfg)
    assert s["pseudonymized"]
    text = (tmp_path / "b" / "trees.jsonl").read_text()
    assert "12345" not in text and "67890" not in text


def _corpus(n_casc: int = 40, seed: int = 0) -> list[list[tuple[str, int]]]:
    """Authors a0-a3; fans f0-f9 each follow one author; some random others."""
    rng = random.Random(seed)
    out = []
    for c in range(n_casc):
        a = c % 4
        t = T0 + 3600 * c
        users = [f"f{k}" for k in range(10) if k % 4 == a] + rng.sample([f"o{k}" for k in range(8)], 2)
        rng.shuffle(users)
        out.append([(f"a{a}", t)] + [(u, t + 60 * (k + 1)) for k, u in enumerate(users)])
    return out


def _samples(build: Path, out: Path, **kw) -> list[dict]:
    cfg = SocialSamplesConfig.load(None, [], build_dir=str(build), out=str(out), progress=False,
                                   max_depth=0, **kw)
    run_samples(cfg)
    return [r for f in sorted(out.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_the_candidate_line_tells_behaviour_before_the_sample(tmp_path):
    """Counted by hand: fan f0 of author a0 reacted to a0's earlier cascades."""
    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", _corpus())])
    rows = _samples(b, tmp_path / "s", k_ranges=[[1.0, 1.0]])
    u = UserTable(b)
    f0 = u.ids[u.pos["f0"]] if "f0" in u.pos else None
    assert f0 == "f0"  # unpseudonymised (build_trees without a pseudonymizer)
    seen = 0
    for r in rows:
        root_c = int(r["root_id"].split("-")[1]) - 1   # line - 1 = cascade number
        author = f"a{root_c % 4}"
        lines = dict(x.split(": ", 1) for x in r["prompt"].splitlines() if x.startswith(("f", "o")))
        if "f0" not in lines or root_c < 4:
            continue
        seen += 1
        earlier_same_author = sum(1 for c in range(root_c) if c % 4 == root_c % 4)
        want = earlier_same_author if author == "a0" else 0
        assert f"this author {want}x" in lines["f0"], (r["root_id"], lines["f0"])
        assert f"alongside {int(want > 0)}/1 here {want}x" in lines["f0"] and "earlier acts; last " in lines["f0"]
    assert seen >= 5


def test_behaviour_lines_are_the_profile_lines(tmp_path):
    """The samples' fast candidate lines equal UserTable.profile_line with the same present users."""
    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", _corpus())])
    u = UserTable(b)
    maker = SampleMaker(u, max_depth=1, k_ranges=[[0, 0]], max_pool=100, seed=0, cutoffs=(0, 0))
    rng = random.Random(2)
    idx = [rng.randrange(len(u.ids)) for _ in range(200)]
    times = [T0 + rng.randrange(0, 40 * 3600) for _ in idx]
    present = [u.present([rng.choice(["a0", "a1", "zz"]), *rng.sample(["f1", "f2", "o3"], rng.randrange(3))], t)
               for t in times]
    counts = u.acts_before_many(np.array(idx), np.array(times)).tolist()
    got = [x.decode() for x in maker.candidate_lines(idx, counts, times, present)]
    want = [f"{u.ids[i]}: {u.profile_line(i, c, t, True, p)}" for i, c, t, p in zip(idx, counts, times, present)]
    assert got == want
    assert any("this author 0x" in x for x in want) and any("this author 0x" not in x and "author" in x for x in want)


def test_no_prompt_depends_on_later_activity(tmp_path):
    """Shuffle who acted after a cut time: every sample of a root before the cut keeps its prompt."""
    casc = _corpus(60)
    cut = T0 + 3600 * 40
    late = [(ci, k) for ci, c in enumerate(casc) for k, (_, t) in enumerate(c) if t >= cut and k > 0]
    users = [casc[ci][k][0] for ci, k in late]
    random.Random(5).shuffle(users)
    other = [list(c) for c in casc]
    for (ci, k), usr in zip(late, users):
        other[ci][k] = (usr, other[ci][k][1])
    other = [c for c in (list(dict(reversed(c)).items())[::-1] for c in other)]  # a user once per cascade
    other = [sorted(((u, t) for u, t in c), key=lambda x: x[1]) for c in other]
    _, b1 = _build(tmp_path, [_write(tmp_path / "a.txt", casc)], name="b1")
    _, b2 = _build(tmp_path, [_write(tmp_path / "b.txt", other)], name="b2")
    r1 = {r["root_id"].split("-")[1]: r["prompt"] for r in _samples(b1, tmp_path / "s1") if r["time"] < cut}
    r2 = {r["root_id"].split("-")[1]: r["prompt"] for r in _samples(b2, tmp_path / "s2") if r["time"] < cut}
    assert len(r1) >= 30 and r1 == r2
    assert any("this author" in p for p in r1.values())


def test_noise_from_all_users_hides_the_newcomers(tmp_path):
    """With noise from users active before the node, a candidate without earlier acts is always
    a true reactor; with noise from every user, noise users without acts appear too."""
    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", _corpus())])
    for mode, noise_zero in (("active_before", False), ("all", True)):
        rows = _samples(b, tmp_path / mode, noise_users=mode, k_ranges=[[2.0, 3.0]])
        zero = [(u in r["true_users"]) for r in rows for u, line in
                (x.split(": ", 1) for x in r["prompt"].splitlines() if x.startswith(("f", "o", "a")))
                if "; 0 earlier acts" in line]
        assert any(zero)
        assert (not all(zero)) == noise_zero, mode


def test_author_and_co_react_baselines_find_the_fans(tmp_path):
    """Each author has fans who join all their cascades: the author and co-react baselines name
    them (read from the build, before each sample); history, which counts all acts, does less well."""
    from simtune.recipes.social.baselines import BuildActivity, baseline_predictions, train_statistics

    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", _corpus(60))])
    rows = _samples(b, tmp_path / "s", k_ranges=[[2.0, 3.0]], noise_users="all")
    stats = train_statistics([r for r in rows if r["split"] == "train"])
    late = [r for r in rows if int(r["root_id"].split("-")[1]) > 12]
    got = baseline_predictions(late, stats, BuildActivity(b))
    assert {"history", "author", "co-react", "author+co-react"} <= set(got)
    for name in ("author", "co-react", "author+co-react"):
        for r in late:
            fans = {u for u in r["true_users"] if u.startswith("f")}
            chosen = {e["user"] for e in got[name][r["sample_id"]].answer}
            assert fans <= chosen, (name, r["root_id"], fans, chosen)
    hist_hits = sum(len({u for u in r["true_users"] if u.startswith("f")} & {e["user"] for e in got["history"][r["sample_id"]].answer})
                    for r in late)
    fan_total = sum(1 for r in late for u in r["true_users"] if u.startswith("f"))
    assert hist_hits < fan_total


def test_the_simulator_asks_what_the_diffusion_samples_ask(tmp_path):
    """With behaviour lines too, the simulator's question for a sample's post and pool is the
    sample's prompt."""
    from simtune.recipes.social.simulate import Lines, node_prompt

    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", _corpus())])
    rows = _samples(b, tmp_path / "s", noise_users="all", k_ranges=[[1.0, 2.0]])
    lines = Lines(None, str(b))
    trees = {t["root_id"]: t for t in _trees(b)}
    n = 0
    for r in rows:
        root = trees[r["root_id"]]["nodes"][0]
        post = {"text": root["text"], "user": root["user"], "time": root["time"]}
        assert node_prompt(post, [], lines(list(r["candidates"]), r["time"], [root["user"]])) == r["prompt"]
        n += "this author" in r["prompt"]
    assert n > 10


def test_the_proposer_puts_the_authors_fans_first_and_reads_only_the_past(tmp_path):
    """Out of everyone, the proposer's k best of a late post are its author's fans (they joined
    the author's earlier cascades), the rest are counted as left out, and shuffling who acted
    after the post changes no proposal."""
    from simtune.recipes.social.candidates import propose
    casc = _corpus(60)
    _, b = _build(tmp_path, [_write(tmp_path / "c.txt", casc)])
    u = UserTable(b)
    n = 0
    for c in range(20, 60, 7):
        author, t = casc[c][0]
        universe = [u.ids[i] for i in u.by_first[:u.eligible(t)] if u.ids[i] != author]
        fans = [f"f{k}" for k in range(10) if k % 4 == c % 4]
        got = propose(u, universe, t, [author], len(fans))
        assert set(got.users) == set(fans) and got.outside == len(universe) - len(fans)
        n += 1
    assert n == 6
    assert propose(u, ["f1", "o2"], T0, ["a0"], 5).users == ["f1", "o2"]  # a universe within k: everyone, in order
    # after a cut, o7 joins every cascade first (a proposer that read the future would put o7 first
    # for every author): the same proposals before the cut
    cut = T0 + 3600 * 40
    other = [[("o7" if t >= cut and k == 1 else usr, t) for k, (usr, t) in enumerate(cc)] for cc in casc]
    other = [list(dict(reversed(cc)).items())[::-1] for cc in other]
    _, b2 = _build(tmp_path, [_write(tmp_path / "d.txt", [sorted(cc, key=lambda x: x[1]) for cc in other])], name="b2")
    u2 = UserTable(b2)
    for c in range(10, 40, 3):
        author, t = casc[c][0]
        universe = [u.ids[i] for i in u.by_first[:u.eligible(t)] if u.ids[i] != author]
        assert propose(u, universe, t, [author], 4) == propose(u2, universe, t, [author], 4)
