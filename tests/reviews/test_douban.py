"""The recipe on the real Douban data (../shared/data/douban-2022films), users with >= 5 reviews."""
import csv
import io
from collections import defaultdict

import pytest

from simtune.io import RejectLog
from simtune.recipes.reviews.baselines import compute_baselines
from simtune.recipes.reviews.commands import load_config, prepare, print_inspect
from simtune.recipes.reviews.evaluate import sentiment_rating_corr
from simtune.recipes.reviews.ingest import load_reviews
from simtune.recipes.reviews.samples import PromptOptions, build_samples, split_corpus

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def douban(shared_data):
    folder = shared_data / "douban-2022films"
    rows = []  # read independently of the loader: (file, user key, username, time)
    for f in sorted((folder / "details").glob("*.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                rows.append((f.stem, r["id"], r["username"], r["time"]))
    rej = RejectLog()
    corpus = load_reviews(folder, rej)
    return folder, rows, corpus, rej


def test_every_row_is_kept_or_rejected_and_counted(douban):
    _, rows, corpus, rej = douban
    assert len(corpus.reviews) + rej.total == corpus.records_in == len(rows) > 10_000
    assert rej.counts["duplicate"] > 0 and set(rej.counts) <= {"duplicate", "empty review", "bad time", "bad star",
                                                                "bad row", "no user", "bad encoding", "mojibake"}
    assert corpus.notes == {"unknown_films": 0, "empty_files": 0}
    assert all(r.rating in (None, 1, 2, 3, 4, 5) for r in corpus.reviews)
    assert sum(r.rating is None for r in corpus.reviews) > 1000  # empty stars are kept, without a rating
    assert len({(r.user_id, r.film_id) for r in corpus.reviews}) == len(corpus.reviews)


def test_users_with_five_reviews_split_in_time_and_history_strictly_before(douban):
    _, _, corpus, _ = douban
    per_user = corpus.by_user()
    expected = {u for u, v in per_user.items() if len(v) >= 5}
    sp = split_corpus(corpus, (0.7, 0.15, 0.15), min_reviews=5)
    assert set(sp.per_user) == expected and 100 <= len(expected) <= 146
    assert sp.skipped_users == len(per_user) - len(expected)
    for uid, rows in sp.per_user.items():
        order = {"train": 0, "val": 1, "test": 2}
        assert [order[s] for _, s in rows] == sorted(order[s] for _, s in rows)
        times = [r.when for r, _ in rows]
        assert times == sorted(times)
        assert sum(s == "test" for _, s in rows) >= 1 and sum(s == "train" for _, s in rows) >= 3
    samples = build_samples(corpus, sp, PromptOptions(history_budget=100_000))
    assert len(samples) == sum(len(v) for v in sp.per_user.values())
    times_of = defaultdict(list)
    for r in corpus.reviews:
        times_of[r.user_id].append(r.timestamp)
    for s in samples:  # every sample: its history is that user's, and strictly earlier
        assert all(h < s["timestamp"] for h in s["history_timestamps"])
        assert s["n_earlier"] == sum(t < s["timestamp"] for t in times_of[s["user_id"]])
        assert len(s["history_timestamps"]) == s["n_earlier"]  # the budget is unlimited here
        assert s["prompt"].endswith(f"为电影《{s['film']}》写一条短评。只写短评本身。")


def test_baselines_on_douban(douban):
    _, _, corpus, _ = douban
    sp = split_corpus(corpus, (0.7, 0.15, 0.15), min_reviews=5)
    rows, info = compute_baselines(sp)
    tests = [s for s in build_samples(corpus, sp, PromptOptions(history_budget=0)) if s["split"] == "test"]
    assert len(rows) == len(tests) and info["no_earlier_review"] == 0
    assert info["similar_fallback_to_recent"] == sum(r["similar_n_refs"] == 0 for r in rows) < len(rows) // 4
    by_user = {uid: [r for r, _ in v] for uid, v in sp.per_user.items()}
    for t, b in zip(tests, rows):
        earlier = [r for r in by_user[t["user_id"]] if r.timestamp < t["timestamp"]]
        assert b["baseline_recent"] == earlier[-1].text
        assert b["baseline_similar"] in {r.text for r in earlier}
    assert sum(b["baseline_similar"] != b["baseline_recent"] for b in rows) > 0


def test_lexicon_follows_real_ratings(douban):
    _, _, corpus, _ = douban
    corr, n = sentiment_rating_corr([r.text for r in corpus.reviews], [r.rating for r in corpus.reviews])
    assert n > 5000 and corr > 0.2  # 0.35 on this data: a weak but real signal


def test_inspect_never_prints_user_keys_or_names(douban):
    folder, rows, _, _ = douban
    cfg = load_config(["--data_path", str(folder), "--preview_samples", "5"])
    prep = prepare(cfg)
    buf = io.StringIO()
    print_inspect(prep, 5, buf)
    out = buf.getvalue()
    assert "kept (>= 5 reviews)" in out and "test  time range: 2022-" in out and out.count(">>> ") == 5
    kept = set(prep.split.per_user)
    assert not [k for k in kept if k in out]  # user keys: nowhere
    names = {name for _, uid, name, _ in rows if uid in kept and name.strip()}
    # names: not in what the report itself says (the samples' review texts may use any word)
    own = "\n".join(line for line in out.splitlines() if line.startswith(("---", "source", "users", "reviews", "samples")))
    assert own.count("--- user #") == 5 and not [n for n in names if n in own]
