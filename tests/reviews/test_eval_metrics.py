import pytest

from simtune.metrics.text import corpus_bleu, rouge_l, spearman
from simtune.recipes.reviews.evaluate import (evaluate_rows, markdown_table, score_system, sentiment_hits,
                                              sentiment_rating_corr, sentiment_score)


def test_lexicon_with_negation():
    assert sentiment_hits("挺好看的，推荐") == [("挺好", 1), ("推荐", 1)]  # longest match, left to right
    assert sentiment_hits("并不精彩") == [("精彩", -1)]
    assert sentiment_hits("不是那好看") == [("好看", -1)]        # negator within 3 characters
    assert sentiment_hits("不，好看") == [("好看", 1)]               # not across punctuation
    assert sentiment_hits("不错") == [("不错", 1)]                   # a word that starts with 不 is one word
    assert sentiment_hits("不推荐") == [("不推荐", -1)]
    assert sentiment_score("精彩，但是拖沓，尴尬") == pytest.approx((1 - 2) / 3)
    assert sentiment_score("今天下雨") == 0.0 and sentiment_score("") == 0.0


def test_sentiment_rating_corr_by_hand():
    texts = ["烂片，无聊", "一般般", "还行吧", "不错，好看", "太精彩了，满分"]
    scores = [sentiment_score(t) for t in texts]
    assert scores == [-1.0, -1.0, 0.0, 1.0, 1.0]
    corr, n = sentiment_rating_corr(texts + ["无评分"], [1, 2, 3, 4, 5, None])
    assert n == 5 and corr == pytest.approx(spearman(scores, [1, 2, 3, 4, 5]))
    assert sentiment_rating_corr(["好看"], [5]) == (None, 1)


def test_lexicon_follows_ratings_on_the_example():
    from simtune.recipes.reviews.ingest import load_reviews
    c = load_reviews("example")
    corr, n = sentiment_rating_corr([r.text for r in c.reviews], [r.rating for r in c.reviews])
    assert n == 30 and corr > 0.5


def test_scores_of_a_copy_and_of_a_mismatch():
    refs = ["开场真是花哨，非常有导演的风格", "烂片，无聊", "太精彩了"]
    rows = [{"response": r, "rating": k} for r, k in zip(refs, [4, 1, 5])]
    rep = evaluate_rows(rows, {"copy": refs, "other": ["甲乙丙", "丁戊", "己"]})
    copy, other = rep["systems"]["copy"], rep["systems"]["other"]
    assert copy["bleu"] == pytest.approx(100 * corpus_bleu(refs, refs)) and copy["rouge1"] == pytest.approx(100)
    assert copy["rougeL"] == pytest.approx(100) and copy["len_ratio"] == pytest.approx(1.0)
    assert copy["sentiment_corr"] == pytest.approx(rep["reference"]["sentiment_corr"])
    assert other["bleu"] == 0 and other["rouge1"] == 0 and other["mean_len"] == pytest.approx(2.0)
    assert rep["reference"]["mean_len"] == pytest.approx((14 + 4 + 4) / 3)
    half = score_system(["开场真是花哨", "烂片", "太精彩了"], refs, [None] * 3)
    assert half["rougeL"] == pytest.approx(100 * (rouge_l("开场真是花哨", refs[0]) + rouge_l("烂片", refs[1]) + 1) / 3)
    assert half["sentiment_corr"] is None and half["n_rated"] == 0
    md = markdown_table(rep["systems"], rep["reference"])
    assert md.count("\n") == 4 and "| copy | 100.00 |" in md and "real reviews (ceiling)" in md
    with pytest.raises(ValueError):
        score_system(["a"], ["a", "b"], [None, None])


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    import random

    from simtune.recipes.reviews.evaluate import paired_bootstrap, paired_table
    b = [random.Random(1).random() for _ in range(150)]
    same = paired_bootstrap([x + 0.05 for x in b], b)  # every pair 5 points apart: no spread at all
    assert same["diff"] == pytest.approx(5) and same["lo"] == pytest.approx(5) and same["hi"] == pytest.approx(5)
    rng = random.Random(2)
    a = [x + rng.gauss(0, 0.2) for x in b]
    noise = paired_bootstrap(a, b)  # pairs differ, on average by ~0
    assert noise["lo"] < 0 < noise["hi"] and noise["hi"] - noise["lo"] > 2
    assert noise == paired_bootstrap(a, b) and noise != paired_bootstrap(a, b, seed=1)  # seeded
    table = paired_table({"a - b": same, "c - d": noise})
    assert "| a - b | 5.00 | [5.00, 5.00] | yes |" in table and "no (0 inside)" in table
    few = paired_bootstrap([1.0, 0.9, 1.0], [0.0, 0.1, 0.0])  # three posts: not called real however far apart
    assert "too few pairs to tell (3 < 20)" in paired_table({"x - y": few})
