"""Per-user chronological splits and the prompts built from a user's dated history.

- Split: each user's reviews are ordered by time (ties: input order, so stable); the
  last ``round(n * test_ratio)`` go to test, the ones before them (``round(n * val_ratio)``)
  to val, the rest to train; val and test get at least one review each when their ratio
  is > 0, train keeps at least one. Users with fewer than ``min_reviews`` are skipped and
  counted.
- History of a sample: only that user's reviews dated strictly before it (an equal
  timestamp is not "before"), whatever their split; the prompt shows as many of them as
  fit ``history_budget`` (tokens when a tokenizer is given, else characters), taken in
  ``history_order`` (``recent``: newest first; ``similar``: most like what other users
  wrote about the target film first, the rule of the ``similar`` baseline), and lists
  them oldest first, newest last.
- Profile: the JSON form's ``user.profile`` fields; for Douban (no profiles) it is derived
  from the same earlier reviews only: how many, since when, mean star rating, the most
  frequent location when any is given.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from simtune.config import ConfigError, opt
from simtune.stage_configs import SFTConfig
from simtune.metrics.text import _f1, lcs_length, text_tokens
from simtune.config_paths import DATES_HELP, date_range
from simtune.pseudonym import PSEUDONYMIZE_HELP, SALT_FILE_HELP, SCRUB_MENTIONS_HELP
from simtune.recipes.reviews.ingest import DOUBAN_TASK, FIRST_DATE, LAST_DATE, Review, ReviewCorpus, UserInfo

SPLITS = ("train", "val", "test")


@dataclass
class ReviewsConfig(SFTConfig):
    """The review recipe: data, split and prompt options, then SFT and evaluation options."""

    data_path: str = opt("example", "a JSON-form file, a Douban folder (info.csv + details/), or 'example' (the shipped example)")
    train_file: Optional[str] = opt(None, "set by the recipe (the built train split); leave unset")
    first_date: str = opt(FIRST_DATE, DATES_HELP.replace("bad_date", "'bad time'"))
    last_date: str = opt(LAST_DATE, DATES_HELP.replace("bad_date", "'bad time'"))
    min_reviews: int = opt(5, "skip users with fewer reviews than this (counted)", min=2)
    train_ratio: float = opt(0.70, "share of each user's reviews (oldest) for training", min=0.0, max=1.0)
    val_ratio: float = opt(0.15, "share after train for validation (early stopping)", min=0.0, max=1.0)
    test_ratio: float = opt(0.15, "share (newest) for test", min=0.0, max=1.0)
    no_profile: bool = opt(False, "leave the user's profile out of the prompt")
    no_history: bool = opt(False, "leave the user's earlier reviews out of the prompt")
    with_rating: bool = opt(False, "tell the model the user's star rating for the target film (where known)")
    history_budget: int = opt(384, "at most this many tokens (characters without a tokenizer) of earlier reviews", min=0)
    history_order: str = opt("recent", "which earlier reviews fill the budget first: the newest, or the ones most like "
                                       "other users' training reviews of the target film (the `similar` baseline's rule)",
                             choices=["recent", "similar"])
    task_description: Optional[str] = opt(None, "task text for the prompt (default: the data's own, or a Douban default)")
    on_bad_record: str = opt("skip", "error: stop at the first bad record; skip: reject it, count it, go on", choices=["error", "skip"])
    pseudonymize: Union[bool, Literal["auto"]] = opt("auto", PSEUDONYMIZE_HELP)
    scrub_mentions: Union[bool, Literal["auto"]] = opt("auto", SCRUB_MENTIONS_HELP + " (known: the name of a "
                                                       "user of the corpus)")
    salt_file: Optional[str] = opt(None, SALT_FILE_HELP)
    eval_max_samples: Optional[int] = opt(None, "evaluate on at most this many test samples (the first, in a stable order)", min=1)
    eval_max_new_tokens: int = opt(96, "new tokens per generated review", min=1)
    eval_repetition_penalty: float = opt(1.0, "decoding: > 1 discourages repeating tokens (tune on val: "
                                              "`eval reviews --split val`)", min=1.0)
    eval_no_repeat_ngram_size: int = opt(0, "decoding: no n-gram of this size twice in a review (0: off; counted in "
                                            "tokens: SmolLM2 spends 1-3 tokens on a Chinese character)", min=0)
    eval_do_sample: bool = opt(False, "decoding: sample (with eval_temperature, eval_top_p, seeded by seed) instead of greedy")
    eval_temperature: float = opt(1.0, "decoding: sampling temperature", min=1e-6)
    eval_top_p: float = opt(1.0, "decoding: nucleus sampling mass", min=1e-6, max=1.0)
    eval_batch_size: int = opt(8, "generation batch size", min=1)
    preview_samples: int = opt(3, "training samples written to training_samples_preview.txt", min=0)
    recipe: str = opt("reviews", "recipe name: outputs/<recipe>/<run_name>_<timestamp>/")
    run_name: str = opt("reviews", "experiment name")

    def validate(self) -> None:
        super().validate()
        date_range(self)
        total = self.train_ratio + self.val_ratio + self.test_ratio
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"{self.source_of('train_ratio')}: train_ratio + val_ratio + test_ratio must be 1, got {total:g}")
        if self.train_ratio <= 0 or self.test_ratio <= 0:
            raise ConfigError(f"{self.source_of('test_ratio')}: train_ratio and test_ratio must be > 0")

    @property
    def ratios(self) -> tuple[float, float, float]:
        return (self.train_ratio, self.val_ratio, self.test_ratio)

    def prompt_options(self) -> "PromptOptions":
        return PromptOptions(not self.no_profile, not self.no_history, self.with_rating, self.history_budget,
                             self.task_description, self.history_order)

    def variant(self) -> str:
        return variant_name(not self.no_profile, not self.no_history, self.with_rating)


def variant_name(use_profile: bool, use_history: bool, with_rating: bool = False) -> str:
    name = {(True, True): "profile+history", (True, False): "profile_only",
            (False, True): "history_only", (False, False): "neither"}[(use_profile, use_history)]
    return name + ("+rating" if with_rating else "")


@dataclass
class PromptOptions:
    use_profile: bool = True
    use_history: bool = True
    with_rating: bool = False
    history_budget: int = 384
    task_description: str | None = None
    history_order: str = "recent"


# --------------------------------------------------------------------------- split

def split_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """(train, val, test) counts for a user with n reviews."""
    _, rv, rt = ratios
    n_test = max(1, math.floor(n * rt + 0.5)) if rt > 0 else 0
    n_val = max(1, math.floor(n * rv + 0.5)) if rv > 0 else 0
    while n - n_test - n_val < 1 and (n_val > 0 or n_test > 1):  # train keeps at least one
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


@dataclass
class Split:
    """Each kept user's reviews in time order, with their split label."""
    per_user: dict[str, list[tuple[Review, str]]]
    skipped_users: int
    skipped_reviews: int
    min_reviews: int

    def reviews(self, split: str) -> list[Review]:
        return [r for rows in self.per_user.values() for r, s in rows if s == split]

    def counts(self) -> dict[str, int]:
        c = Counter(s for rows in self.per_user.values() for _, s in rows)
        return {s: c.get(s, 0) for s in SPLITS}


def split_corpus(corpus: ReviewCorpus, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
                 min_reviews: int = 5) -> Split:
    per_user: dict[str, list[tuple[Review, str]]] = {}
    skipped_users = skipped_reviews = 0
    for uid, revs in corpus.by_user().items():
        if len(revs) < min_reviews:
            skipped_users += 1
            skipped_reviews += len(revs)
            continue
        n_train, n_val, _ = split_sizes(len(revs), ratios)
        per_user[uid] = [(r, "train" if i < n_train else "val" if i < n_train + n_val else "test")
                         for i, r in enumerate(revs)]
    return Split(per_user, skipped_users, skipped_reviews, min_reviews)


def earlier_reviews(rows: list[tuple[Review, str]], target: Review) -> list[Review]:
    """The user's reviews dated strictly before ``target``, oldest first."""
    t = target.when
    return [r for r, _ in rows if r.when < t]


MAX_REFS = 100  # other users' training reviews of a film that a candidate is compared with


def film_references(split: Split) -> dict[str, list[tuple[str, Review]]]:
    """film -> [(user, review)] of the training split, newest first."""
    by_film: dict[str, list[tuple[str, Review]]] = {}
    for uid, rows in split.per_user.items():
        for r, s in rows:
            if s == "train":
                by_film.setdefault(r.film, []).append((uid, r))
    for v in by_film.values():
        v.sort(key=lambda x: x[1].sort_key(), reverse=True)
    return by_film


def other_refs(refs_by_film: dict[str, list[tuple[str, Review]]], uid: str, film: str,
               max_refs: int = MAX_REFS) -> list[str]:
    """The texts of ``film``'s training reviews by users other than ``uid``, newest first."""
    return [x.text for u, x in refs_by_film.get(film, []) if u != uid][:max_refs]


def by_similarity(earlier: list[Review], refs: list[str]) -> list[Review]:
    """``earlier`` (oldest first) ranked by ``mean(char_similarity(h, r) for r in refs)``,
    highest first, ties to the more recent; with no refs, newest first. The ``similar``
    baseline is the head of this list, and ``history_order: similar`` fills the prompt
    from it."""
    if not refs:
        return earlier[::-1]
    ref_toks = [text_tokens(t) for t in refs]

    def score(h: Review) -> float:
        ht = text_tokens(h.text)
        return sum(_f1(lcs_length(ht, rt), len(ht), len(rt)) for rt in ref_toks) / len(ref_toks)
    ranked = sorted(enumerate(earlier), key=lambda x: (score(x[1]), x[0]), reverse=True)
    return [h for _, h in ranked]


# --------------------------------------------------------------------------- prompts

def history_line(r: Review) -> str:
    return f"电影《{r.film}》: {r.text}"


def _cost(text: str, tokenizer) -> int:
    if tokenizer is None:
        return len(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


MIN_PART = 16  # budget units (tokens or characters) worth showing part of a review in


def fit_history(earlier: list[Review], budget: int, tokenizer=None, first: list[Review] | None = None) -> list[Review]:
    """The earlier reviews whose lines fit the budget together, taken in the order ``first``
    (default: newest first), listed oldest first. The first one that does not fit whole is
    shown cut (its text ends in "…") when at least ``MIN_PART`` of the budget is left. Why:
    a review is ~180 tokens for SmolLM2, so with a small budget the first alone often does
    not fit, and the prompt would show none."""
    kept: list[Review] = []
    used = 0
    for r in (earlier[::-1] if first is None else first):
        c = _cost(history_line(r) + "\n", tokenizer)
        if used + c > budget:
            if budget - used >= MIN_PART:
                cut = _cut_to(r, budget - used, tokenizer)
                if cut is not None:
                    kept.append(cut)
            break
        kept.append(r)
        used += c
    return sorted(kept, key=Review.sort_key)


def _cut_to(r: Review, room: int, tokenizer) -> Review | None:
    """``r`` with its text cut (ending in "…") so that its line costs at most ``room``."""
    lo, hi = 0, len(r.text)  # the longest prefix that fits: binary search on characters
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _cost(history_line(dataclasses.replace(r, text=r.text[:mid] + "…")) + "\n", tokenizer) <= room:
            lo = mid
        else:
            hi = mid - 1
    return dataclasses.replace(r, text=r.text[:lo] + "…") if lo else None


def profile_text(corpus_form: str, user: UserInfo, earlier: list[Review]) -> str:
    if corpus_form == "json" or user.profile:
        return "；".join(f"{'名字' if k == 'name' else k}: {v}" for k, v in user.profile.items()
                        if v not in (None, "", [], {}))
    if not earlier:
        return "豆瓣用户；在此之前没有写过短评。"
    parts = [f"豆瓣用户；此前写过 {len(earlier)} 条短评（最早在 {earlier[0].timestamp[:10]}）"]
    rated = [r.rating for r in earlier if r.rating is not None]
    if rated:
        parts.append(f"其中 {len(rated)} 条打了星，平均 {sum(rated) / len(rated):.1f} 星（满分 5 星）")
    else:
        parts.append("从不打星")
    locs = Counter(r.location for r in earlier if r.location)
    if locs:
        parts.append(f"所在地：{locs.most_common(1)[0][0]}")
    return "；".join(parts) + "。"


def build_prompt(corpus_form: str, user: UserInfo, earlier: list[Review], target: Review, opts: PromptOptions,
                 tokenizer=None, refs: list[str] | None = None) -> tuple[str, list[Review]]:
    """The prompt for ``target`` and the earlier reviews it shows (``refs``: other users'
    training reviews of the film, for ``history_order: similar``)."""
    lines: list[str] = []
    if opts.use_profile:
        lines.append(f"【用户】{profile_text(corpus_form, user, earlier)}")
    task = opts.task_description or user.task or DOUBAN_TASK
    lines.append(f"【任务】{task}")
    shown: list[Review] = []
    if opts.use_history:
        first = by_similarity(earlier, refs or []) if opts.history_order == "similar" else None
        shown = fit_history(earlier, opts.history_budget, tokenizer, first)
        if shown:
            lines.append("【该用户以往的短评】（按时间先后，最新的在最后）")
            lines.extend(history_line(r) for r in shown)
        else:
            lines.append("【该用户以往的短评】（无）")
    req = f"【请求】请以这位用户的口吻，为电影《{target.film}》写一条短评"
    if opts.with_rating and target.rating is not None:
        req += f"；这位用户给这部电影打了 {target.rating} 星（满分 5 星）"
    lines.append(req + "。只写短评本身。")
    return "\n".join(lines), shown


def build_samples(corpus: ReviewCorpus, split: Split, opts: PromptOptions, tokenizer=None,
                  splits: tuple[str, ...] = SPLITS) -> list[dict[str, Any]]:
    """One sample per review of every kept user (in the given splits), users in input
    order and each user's reviews in time order."""
    out: list[dict[str, Any]] = []
    refs_by_film = film_references(split) if opts.history_order == "similar" else {}
    for uid, rows in split.per_user.items():
        user = corpus.users.get(uid) or UserInfo(uid)
        for r, s in rows:
            if s not in splits:
                continue
            earlier = earlier_reviews(rows, r)
            prompt, shown = build_prompt(corpus.form, user, earlier, r, opts, tokenizer,
                                         other_refs(refs_by_film, uid, r.film))
            out.append({"prompt": prompt, "response": r.text, "user_id": uid, "film": r.film,
                        "timestamp": r.timestamp, "split": s, "rating": r.rating,
                        "n_earlier": len(earlier), "history_timestamps": [h.timestamp for h in shown]})
    return out


def time_ranges(split: Split) -> dict[str, tuple[str, str] | None]:
    out: dict[str, tuple[str, str] | None] = {}
    for s in SPLITS:
        revs = split.reviews(s)
        if not revs:
            out[s] = None
            continue
        lo = min(revs, key=Review.sort_key)
        hi = max(revs, key=Review.sort_key)
        out[s] = (lo.timestamp, hi.timestamp)
    return out
