"""BLEU and ROUGE on Chinese-aware tokens, and a character similarity.

Tokenisation (:func:`text_tokens`), stated once and used by every metric here:
- each CJK character (CJK ideographs, extensions A and compatibility, kana, hangul) is one token;
- a run of Latin letters or digits (``Elvis``, ``2022``, ``3.5``) is one token, lower-cased;
- whitespace and punctuation (ASCII and full-width, emoji, symbols) are dropped.
So Chinese is scored on characters, the usual practice when no segmenter is wanted
(e.g. the character-level BLEU/ROUGE of CLUE-style and LCSTS evaluations), and mixed
text does not turn an English word into letters.

BLEU (Papineni et al. 2002): clipped n-gram precisions for n = 1..4, geometric mean
with uniform weights, brevity penalty ``exp(1 - r/c)`` when the candidate is shorter
than the reference (one reference per candidate). :func:`corpus_bleu` sums the clipped
counts over the corpus first (no smoothing: any zero precision gives 0).
:func:`sentence_bleu` smooths by default with "add-one for n >= 2" (Lin & Och 2004;
method 2 of Chen & Cherry 2014): 1 is added to the matched and total counts of every
n >= 2. All scores are in [0, 1].

ROUGE-N and ROUGE-L (Lin 2004) are F1 (beta = 1) of clipped n-gram overlap and of the
longest common subsequence; a corpus score is the mean of the per-pair F1.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_CJK = ("\u3040-\u30ff"          # hiragana, katakana
        "\u3400-\u4dbf"          # CJK extension A
        "\u4e00-\u9fff"          # CJK unified ideographs
        "\uac00-\ud7af"          # hangul syllables
        "\uf900-\ufaff"          # CJK compatibility ideographs
        "\U00020000-\U0002ffff")  # extensions B..
_TOKEN = re.compile(rf"[{_CJK}]|[0-9]+(?:\.[0-9]+)?|[^\W\d_{_CJK}]+", re.UNICODE)


def text_tokens(text: str) -> list[str]:
    """``"猫王Elvis 2022年!"`` -> ``['猫', '王', 'elvis', '2022', '年']``."""
    return [t.lower() for t in _TOKEN.findall(text or "")]


def _toks(x: str | Sequence[str]) -> list[str]:
    return text_tokens(x) if isinstance(x, str) else list(x)


def _ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


# --------------------------------------------------------------------------- BLEU

def _bleu_stats(cand: list[str], ref: list[str], max_n: int) -> list[int]:
    """[c_len, r_len, match_1, total_1, ..., match_N, total_N]"""
    stats = [len(cand), len(ref)]
    for n in range(1, max_n + 1):
        c, r = _ngrams(cand, n), _ngrams(ref, n)
        stats += [sum(min(v, r[g]) for g, v in c.items()), max(len(cand) - n + 1, 0)]
    return stats


def _bleu_from_stats(stats: Sequence[int], max_n: int, smooth: bool) -> float:
    c_len, r_len = stats[0], stats[1]
    if c_len == 0:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        match, total = stats[2 * n], stats[2 * n + 1]
        if smooth and n >= 2:
            match, total = match + 1, total + 1
        if match == 0 or total == 0:
            return 0.0
        log_p += math.log(match / total) / max_n
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return bp * math.exp(log_p)


def sentence_bleu(candidate: str | Sequence[str], reference: str | Sequence[str], max_n: int = 4,
                  smooth: bool = True) -> float:
    """BLEU of one candidate against one reference (add-one smoothing for n >= 2 by default)."""
    return _bleu_from_stats(_bleu_stats(_toks(candidate), _toks(reference), max_n), max_n, smooth)


def corpus_bleu(candidates: Sequence[str | Sequence[str]], references: Sequence[str | Sequence[str]],
                max_n: int = 4, smooth: bool = False) -> float:
    """Corpus BLEU: clipped counts and lengths summed over all pairs, then one score."""
    if len(candidates) != len(references):
        raise ValueError(f"corpus_bleu: {len(candidates)} candidates but {len(references)} references")
    total = [0] * (2 + 2 * max_n)
    for c, r in zip(candidates, references):
        for i, v in enumerate(_bleu_stats(_toks(c), _toks(r), max_n)):
            total[i] += v
    return _bleu_from_stats(total, max_n, smooth)


# --------------------------------------------------------------------------- ROUGE

def _f1(overlap: int, n_cand: int, n_ref: int) -> float:
    if overlap == 0 or n_cand == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_cand, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(candidate: str | Sequence[str], reference: str | Sequence[str], n: int = 1) -> float:
    """ROUGE-N F1 (clipped n-gram overlap)."""
    c, r = _ngrams(_toks(candidate), n), _ngrams(_toks(reference), n)
    overlap = sum(min(v, r[g]) for g, v in c.items())
    return _f1(overlap, sum(c.values()), sum(r.values()))


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyro):
    O(len(b)) big-integer operations instead of an O(len(a) * len(b)) table."""
    if not a or not b:
        return 0
    masks: dict = {}
    for i, t in enumerate(a):
        masks[t] = masks.get(t, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for t in b:
        u = v & masks.get(t, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(candidate: str | Sequence[str], reference: str | Sequence[str]) -> float:
    """ROUGE-L F1 from the longest common subsequence."""
    c, r = _toks(candidate), _toks(reference)
    return _f1(lcs_length(c, r), len(c), len(r))


def char_similarity(a: str, b: str) -> float:
    """Similarity of two texts in [0, 1]: ROUGE-L F1 on :func:`text_tokens` (characters for
    Chinese). Symmetric; 1.0 for texts with the same tokens, 0.0 when nothing is shared."""
    return rouge_l(a, b)


# --------------------------------------------------------------------------- correlation

def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation, or None with fewer than 2 pairs or a constant side."""
    if len(x) != len(y):
        raise ValueError("pearson: x and y differ in length")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _ranks(x: Sequence[float]) -> list[float]:
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share the mean rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (Pearson on mean ranks, so ties are handled)."""
    if len(x) != len(y):
        raise ValueError("spearman: x and y differ in length")
    return pearson(_ranks(x), _ranks(y))

