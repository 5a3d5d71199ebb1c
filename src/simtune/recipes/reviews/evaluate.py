"""Scoring generated reviews against the real ones, always beside the two baselines.

Text overlap: corpus BLEU-4 and mean ROUGE-1/2/L F1 on Chinese characters (Latin words
and numbers kept whole, punctuation dropped; see :mod:`simtune.metrics.text`).
Length: mean and median characters (tokens of :func:`text_tokens`) of each system's
texts against the real reviews'.
Sentiment vs rating: a small hand-written Chinese lexicon scores each text in [-1, 1];
the Spearman correlation of that score with the user's star rating, over the samples
that have a rating, is reported for every system and for the real reviews (the ceiling
this lexicon can reach).
"""
from __future__ import annotations

import re
import statistics
from typing import Sequence

from simtune.metrics.paired import paired_bootstrap, paired_table  # noqa: F401  (the reviews commands import them here)
from simtune.metrics.text import corpus_bleu, rouge_l, rouge_n, spearman, text_tokens

# -- the sentiment lexicon (written for this project; Douban short-review vocabulary)
POSITIVE = set("""
好看 很好 真好 挺好 太好 好笑 精彩 喜欢 推荐 感动 动人 震撼 惊艳 优秀 出色 完美 经典 不错 满分 佳作 神作 过瘾 爽 燃
温暖 治愈 有趣 值得 值回票价 漂亮 很美 太美 真美 唯美 美好 用心 真诚 细腻 扎实 成熟 惊喜 五星 四星 力量 诗意 舒服 可爱 厉害
牛逼 太牛 赞 棒 妙 绝了 泪目 看哭 哭了 笑死 良心 上乘 亮点 加分 难得 瑕不掩瑜 出彩 流畅 生动 真实 深刻 高级 享受 好评 封神
范本 功力 有力量 见功力 自然 炸裂 带感 爱了 爱死 二刷 三刷 宝藏 吹爆 惊喜 感人 暖心 动容 共鸣 佩服 满意 不负 值 帅
""".split())
NEGATIVE = set("""
难看 无聊 烂 很差 太差 差劲 失望 尴尬 垃圾 浪费 空洞 拖沓 冗长 乏味 平庸 敷衍 狗血 做作 浮夸 刻意 生硬 混乱 失控 漏洞 烂尾
睡着 困 闷 看不懂 一般 一般般 不推荐 不好看 没意思 没劲 难受 恶心 低级 廉价 套路 硬凹 工具人 堆砌 莫名其妙 离谱 糟糕 遗憾 可惜
不行 退步 智障 弱智 降智 折磨 煎熬 劝退 难以下咽 一星 二星 两星 槽点 硬伤 败笔 仓促 崩 雷人 踩雷 坑爹 粗糙 平淡 老套 俗套 抄袭
无趣 头大 欣赏不来 看不下去 差评 失败 拉胯 拉垮 水准下降 稀烂 白瞎 难顶 油腻 幼稚 矫情 恶俗 一言难尽 不知所云 太长 太慢 略急 拖
""".split())
NEGATORS = set("不没无别未非")
_LEXICON = {w: 1 for w in POSITIVE} | {w: -1 for w in NEGATIVE}
_MAXLEN = max(len(w) for w in _LEXICON)
_PUNCT = re.compile(r"[\s，。！？；：、,.!?;:…~～\-—()（）\"'“”‘’《》]")


def sentiment_hits(text: str) -> list[tuple[str, int]]:
    """Lexicon words found (longest match first, left to right), each with its polarity
    after negation: a negator (不 没 无 别 未 非) within the 3 characters before a word,
    not crossing punctuation or an earlier hit, flips it (不精彩 -> negative)."""
    hits: list[tuple[str, int]] = []
    i, last_end = 0, 0
    while i < len(text):
        for n in range(min(_MAXLEN, len(text) - i), 0, -1):
            w = text[i:i + n]
            if w in _LEXICON:
                pol = _LEXICON[w]
                j = i - 1
                while j >= max(last_end, i - 3) and not _PUNCT.match(text[j]):
                    if text[j] in NEGATORS:
                        pol = -pol
                        break
                    j -= 1
                hits.append((w, pol))
                i += n
                last_end = i
                break
        else:
            i += 1
    return hits


def sentiment_score(text: str) -> float:
    """(positive - negative) / (positive + negative) hits, 0.0 when there are none."""
    hits = sentiment_hits(text or "")
    if not hits:
        return 0.0
    pos = sum(1 for _, p in hits if p > 0)
    return (2 * pos - len(hits)) / len(hits)


def sentiment_rating_corr(texts: Sequence[str], ratings: Sequence[int | None]) -> tuple[float | None, int]:
    """Spearman(sentiment score, star rating) over the pairs with a rating, and how many."""
    pairs = [(sentiment_score(t), r) for t, r in zip(texts, ratings) if r is not None]
    if len(pairs) < 3:
        return None, len(pairs)
    return spearman([p for p, _ in pairs], [r for _, r in pairs]), len(pairs)


def length_stats(texts: Sequence[str]) -> dict:
    lens = [len(text_tokens(t)) for t in texts]
    return {"mean_len": statistics.fmean(lens) if lens else 0.0,
            "median_len": statistics.median(lens) if lens else 0.0,
            "empty": sum(1 for n in lens if n == 0)}


def score_system(preds: Sequence[str], refs: Sequence[str], ratings: Sequence[int | None]) -> dict:
    """BLEU and ROUGE (0..100), length and sentiment-vs-rating for one system's texts."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    n = max(len(refs), 1)
    out = {"bleu": 100 * corpus_bleu(preds, refs),
           "rouge1": 100 * sum(rouge_n(p, r, 1) for p, r in zip(preds, refs)) / n,
           "rouge2": 100 * sum(rouge_n(p, r, 2) for p, r in zip(preds, refs)) / n,
           "rougeL": 100 * sum(rouge_l(p, r) for p, r in zip(preds, refs)) / n}
    out.update(length_stats(preds))
    ref_len = statistics.fmean([len(text_tokens(r)) for r in refs]) if refs else 0.0
    out["len_ratio"] = out["mean_len"] / ref_len if ref_len else None
    out["sentiment_corr"], out["n_rated"] = sentiment_rating_corr(preds, ratings)
    return out


def evaluate_rows(rows: Sequence[dict], systems: dict[str, Sequence[str]]) -> dict:
    """``rows``: test samples with ``response`` and ``rating``; ``systems``: name -> texts.
    Returns {"n", "reference": {...}, "systems": {name: metrics}}."""
    refs = [r["response"] for r in rows]
    ratings = [r.get("rating") for r in rows]
    corr, n_rated = sentiment_rating_corr(refs, ratings)
    ref = {**length_stats(refs), "sentiment_corr": corr, "n_rated": n_rated}
    return {"n": len(rows), "reference": ref,
            "systems": {name: score_system(list(texts), refs, ratings) for name, texts in systems.items()}}


def per_sample(metric: str, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """One sample's score (0..1) per pair: ``rougeL`` or ``rouge1``."""
    if metric == "rougeL":
        return [rouge_l(p, r) for p, r in zip(preds, refs)]
    return [rouge_n(p, r, 1) for p, r in zip(preds, refs)]


METRIC_COLUMNS = [("bleu", "BLEU"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"),
                  ("mean_len", "mean len"), ("len_ratio", "len ratio"), ("sentiment_corr", "sentiment~rating")]


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def markdown_table(rows: dict[str, dict], reference: dict | None = None) -> str:
    head = "| system | " + " | ".join(h for _, h in METRIC_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_COLUMNS) + 1)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(k)) for k, _ in METRIC_COLUMNS) + " |")
    if reference is not None:
        ref = {"mean_len": reference.get("mean_len"), "len_ratio": 1.0, "sentiment_corr": reference.get("sentiment_corr")}
        lines.append("| real reviews (ceiling) | " + " | ".join(
            _fmt(ref.get(k)) if k in ref else "" for k, _ in METRIC_COLUMNS) + " |")
    return "\n".join(lines)
