import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simtune.metrics.text import (char_similarity, corpus_bleu, lcs_length, rouge_l, rouge_n, sentence_bleu,
                                  spearman, text_tokens)


def test_tokens_split_cjk_keep_latin_words_drop_punctuation():
    assert text_tokens("猫王Elvis 2022年，真的3.5分！") == ["猫", "王", "elvis", "2022", "年", "真", "的", "3.5", "分"]
    assert text_tokens("") == [] and text_tokens("。。！ ") == []


def test_identical_and_disjoint():
    s = "开场真是花哨，非常有导演的风格"
    for f in (rouge_l, lambda a, b: rouge_n(a, b, 1), lambda a, b: rouge_n(a, b, 2), sentence_bleu):
        assert f(s, s) == pytest.approx(1.0)
        assert f(s, "完全不同甲乙丙丁") == 0.0
    assert corpus_bleu([s, s], [s, s]) == pytest.approx(1.0)
    assert char_similarity(s, s) == 1.0 and char_similarity("", s) == 0.0


def test_rouge_by_hand():
    # 我喜欢这部电影 vs 我不喜欢这部片: 5 shared characters of 7 each -> F1 5/7
    assert rouge_n("我喜欢这部电影", "我不喜欢这部片", 1) == pytest.approx(5 / 7)
    # bigrams: 喜欢 欢这 这部 shared, 6 each -> 0.5
    assert rouge_n("我喜欢这部电影", "我不喜欢这部片", 2) == pytest.approx(0.5)
    # the classic ABCBDAB / BDCABA pair: LCS 4 -> P 4/7, R 4/6, F1 32/52
    assert lcs_length(list("甲乙丙乙丁甲乙"), list("乙丁丙甲乙甲")) == 4
    assert rouge_l("甲乙丙乙丁甲乙", "乙丁丙甲乙甲") == pytest.approx(32 / 52)


def test_bleu_brevity_penalty_and_smoothing():
    # the candidate is a 7-character prefix of a 9-character reference: all precisions 1
    assert corpus_bleu(["我喜欢这部电影"], ["我喜欢这部电影真的"]) == pytest.approx(math.exp(1 - 9 / 7))
    # longer than the reference: no penalty, precision 7/9 on unigrams
    assert sentence_bleu("我喜欢这部电影真的", "我喜欢这部电影") < 1.0
    # p1 = 4/4, p2 = 1/3, p3 = 0/2, p4 = 0/1; add-one for n >= 2 -> (1 * 2/4 * 1/3 * 1/2) ** 1/4
    assert sentence_bleu("甲乙丙丁", "甲乙丁丙") == pytest.approx((1 / 12) ** 0.25)
    assert sentence_bleu("甲乙丙丁", "甲乙丁丙", smooth=False) == 0.0
    assert corpus_bleu(["甲乙丙丁"], ["甲乙丁丙"]) == 0.0
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [])


def test_corpus_bleu_pools_counts():
    # pooled: unigram 8/8; bigram (3+1)/6; trigram (2+0)/4; 4-gram (1+0)/2; equal lengths
    got = corpus_bleu(["甲乙丙丁", "戊己庚辛"], ["甲乙丙丁", "戊己辛庚"])
    assert got == pytest.approx((1 * (4 / 6) * (2 / 4) * (1 / 2)) ** 0.25)


def _lcs_dp(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            t[i + 1][j + 1] = t[i][j] + 1 if a[i] == b[j] else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("甲乙丙丁戊"), max_size=30), st.lists(st.sampled_from("甲乙丙丁戊"), max_size=30))
def test_bit_parallel_lcs_matches_dp(a, b):
    assert lcs_length(a, b) == _lcs_dp(a, b) == lcs_length(b, a)


def test_spearman_with_ties_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1], [2]) is None
