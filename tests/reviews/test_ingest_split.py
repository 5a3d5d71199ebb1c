import dataclasses
import json

import pytest

from simtune.io import DataError, RejectLog
from simtune.recipes.reviews.ingest import EXAMPLE_PATH, film_from_prefix, load_reviews
from simtune.recipes.reviews.samples import (PromptOptions, build_prompt, build_samples, fit_history, split_corpus,
                                             split_sizes)


def test_example_is_valid_json_form_with_several_users():
    c = load_reviews("example")
    assert c.form == "json" and c.rejects.total == 0 and c.ignored_collections == 0
    per = c.by_user()
    assert len(per) >= 3 and all(8 <= len(v) <= 12 for v in per.values())
    assert all(r.rating in (1, 2, 3, 4, 5) for r in c.reviews)
    assert json.loads(EXAMPLE_PATH.read_text(encoding="utf-8"))[0]["task"]["task_behavior_collections"][0]["type"] == "movie_review"


def test_film_prefix():
    assert film_from_prefix("电影名: 猫王 Elvis") == "猫王 Elvis"
    assert film_from_prefix("电影名：《归途》: ") == "归途"


def test_douban_rejects_each_bad_row_with_file_line_reason(douban_dir, tmp_path):
    rej = RejectLog(tmp_path / "rejects.jsonl")
    with rej:
        c = load_reviews(douban_dir, rej)
    assert rej.counts == {"bad time": 1, "bad star": 1, "bad row": 1, "duplicate": 1, "empty review": 1}
    lines = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert {(x["file"].rsplit("/", 1)[1], x["line"], x["reason"].split(":")[0]) for x in lines} == {
        ("101.csv", 4, "bad time"), ("101.csv", 5, "bad star"), ("101.csv", 6, "bad row"),
        ("101.csv", 7, "duplicate"), ("101.csv", 8, "empty review")}
    assert len(c.reviews) == 6
    b = [r for r in c.reviews if r.user_id == "ub" and r.film == "甲片"][0]
    assert b.rating is None and b.location is None  # empty star: a review without a rating
    assert [r.rating for r in c.by_user()["ua"]] == [4, 2, 3]
    with pytest.raises(DataError, match=r"101\.csv:4: field 'time'"):
        load_reviews(douban_dir, RejectLog(strict=True))


def test_json_form_errors_name_the_field(tmp_path, json_form):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([{"user": {"profile": {}}, "task": {}}]))
    with pytest.raises(DataError, match=r"users\[0\]\.user\.profile\.name"):
        load_reviews(p)
    p.write_text("[{")
    with pytest.raises(DataError, match="bad.json:1: not valid JSON"):
        load_reviews(p)
    p = json_form(tmp_path / "t.json", {"u": [("2023-13-01", "片", "好", None), ("2023-01-01", "片", "", None)]})
    rej = RejectLog()
    c = load_reviews(p, rej)
    assert rej.counts == {"bad time": 1, "empty review": 1} and c.reviews == [] and c.ignored_collections == 1


@pytest.mark.parametrize("n,ratios,expected", [
    (10, (0.7, 0.15, 0.15), (6, 2, 2)), (5, (0.7, 0.15, 0.15), (3, 1, 1)), (20, (0.8, 0.1, 0.1), (16, 2, 2)),
    (2, (0.7, 0.15, 0.15), (1, 0, 1)), (7, (0.5, 0.0, 0.5), (3, 0, 4)),
])
def test_split_sizes(n, ratios, expected):
    assert split_sizes(n, ratios) == expected


def test_split_is_chronological_per_user_and_skips_small_users(tmp_path, json_form):
    users = {"多": [(f"2023-01-{d:02d}", f"片{d}", f"评论{d}", None) for d in (9, 3, 7, 1, 5, 2, 8, 4, 6, 10)],
             "少": [("2023-01-01", "片1", "只有一条", 3)]}
    c = load_reviews(json_form(tmp_path / "u.json", users))
    sp = split_corpus(c, (0.6, 0.2, 0.2), min_reviews=3)
    assert sp.skipped_users == 1 and sp.skipped_reviews == 1 and list(sp.per_user) == ["多"]
    labels = [(r.timestamp[-2:], s) for r, s in sp.per_user["多"]]
    assert labels == [("01", "train"), ("02", "train"), ("03", "train"), ("04", "train"), ("05", "train"),
                      ("06", "train"), ("07", "val"), ("08", "val"), ("09", "test"), ("10", "test")]


def test_history_strictly_before_with_ties_and_budget(tmp_path, json_form):
    users = {"u": [("2023-01-01", "一", "第一条", 5), ("2023-01-02", "二", "第二条", 4),
                   ("2023-01-02", "三", "同一天的第三条", 3), ("2023-01-03", "四", "第四条", 2),
                   ("2023-01-04", "五", "第五条", 1)]}
    c = load_reviews(json_form(tmp_path / "u.json", users))
    sp = split_corpus(c, (0.6, 0.2, 0.2), min_reviews=5)
    samples = build_samples(c, sp, PromptOptions(history_budget=10_000))
    by_film = {s["film"]: s for s in samples}
    assert by_film["三"]["history_timestamps"] == ["2023-01-01"]  # the same-day review is not "before"
    assert by_film["二"]["history_timestamps"] == ["2023-01-01"]
    assert by_film["五"]["n_earlier"] == 4
    p = by_film["五"]["prompt"]
    assert p.index("电影《一》: 第一条") < p.index("电影《四》: 第四条")  # newest last
    assert "第五条" not in p and "电影《五》" in p and "名字: u" in p and "写影评" in p
    # budget in characters: "电影《四》: 第四条\n" is 11, "电影《三》: 同一天的第三条\n" is 15
    earlier = [r for r, _ in sp.per_user["u"]][:4]
    assert [r.film for r in fit_history(earlier, 26)] == ["三", "四"]
    assert [r.film for r in fit_history(earlier, 25)] == ["四"]  # the oldest goes first
    assert fit_history(earlier, 5) == []
    # the newest does not fit whole: it is shown cut to the budget, and nothing older
    line = lambda r: len(f"电影《{r.film}》: {r.text}\n")  # noqa: E731
    long = fit_history(earlier[:1] + [dataclasses.replace(earlier[3], text="长" * 100)], 40)
    assert len(long) == 1 and long[0].text.endswith("…") and long[0].text[:-1] == "长" * (len(long[0].text) - 1)
    assert line(long[0]) == 40  # the longest cut that fits
    assert fit_history([dataclasses.replace(earlier[3], text="长" * 100)], 15) == []  # under 16 left: not shown


class _CharTok:  # counts two "tokens" per character
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [0] * (2 * len(text))}


def test_budget_counts_tokens_with_a_tokenizer():
    c = load_reviews("example")
    earlier = c.by_user()["林间小鹿"][:5]
    by_chars = fit_history(earlier, 200)
    by_tokens = fit_history(earlier, 200, _CharTok())
    assert len(by_tokens) < len(by_chars) and by_tokens == by_chars[len(by_chars) - len(by_tokens):]


def test_prompt_flags(tmp_path):
    c = load_reviews("example")
    sp = split_corpus(c, (0.7, 0.15, 0.15), 5)
    uid, rows = next(iter(sp.per_user.items()))
    target = rows[-1][0]
    earlier = [r for r, _ in rows[:-1]]
    user = c.users[uid]
    full, shown = build_prompt("json", user, earlier, target, PromptOptions(with_rating=True))
    assert "【用户】" in full and "【该用户以往的短评】" in full and f"打了 {target.rating} 星" in full and shown
    bare, shown = build_prompt("json", user, earlier, target, PromptOptions(use_profile=False, use_history=False))
    assert "【用户】" not in bare and "电影《" + earlier[-1].film not in bare and shown == [] and "星" not in bare
    assert f"电影《{target.film}》写一条短评" in bare


def test_douban_profile_is_derived_from_earlier_reviews_only(douban_dir):
    c = load_reviews(douban_dir)
    sp = split_corpus(c, (0.34, 0.33, 0.33), min_reviews=3)
    samples = {(s["user_id"], s["film"]): s for s in build_samples(c, sp, PromptOptions())}
    last = samples[("ua", "丙片")]["prompt"]
    # ua's earlier: 甲片 (4 stars, 北京) and 乙片 (2 stars, 北京) -> mean 3.0
    assert "此前写过 2 条短评" in last and "平均 3.0 星" in last and "所在地：北京" in last
    first = samples[("ua", "甲片")]["prompt"]
    assert "没有写过短评" in first and "北京" not in first
    # ub's 乙片 (2022-01-20) comes after 甲片 (01-02) although it is in a later file
    assert samples[("ub", "乙片")]["history_timestamps"] == ["2022-01-02 10:00:00"]
    assert "从不打星" in samples[("ub", "乙片")]["prompt"]


def test_history_order_similar_fills_the_budget_with_what_others_wrote_of_the_film(tmp_path, json_form):
    """history_order similar: the user's earlier review most like other users' *training*
    reviews of the target film comes first (the similar baseline's rule), then the rest
    by that score; the prompt still lists what it shows oldest first."""
    a = [("2023-01-01", "甲", "特效震撼场面宏大", 4), ("2023-01-02", "乙", "剧情无聊节奏拖沓", 2),
         ("2023-01-03", "丙", "演员演技一般般吧", 3), ("2023-01-04", "丁", "好看", 4),
         ("2023-01-05", "戊", "还行", 3), ("2023-01-09", "靶", "目标", 4)]
    b = [("2022-12-01", "靶", "特效震撼场面宏大真好", 5)] + [(f"2023-01-0{d}", f"片{d}", "随便写写", 3) for d in range(1, 6)]
    c = load_reviews(json_form(tmp_path / "u.json", {"a": a, "b": b}))
    sp = split_corpus(c, (0.5, 0.0, 0.5), min_reviews=5)
    assert [s for r, s in sp.per_user["b"] if r.film == "靶"] == ["train"]
    def shown(**kw):
        return next(s for s in build_samples(c, sp, PromptOptions(**kw)) if s["user_id"] == "a" and s["film"] == "靶")
    one = shown(history_budget=16, history_order="similar")  # "电影《甲》: 特效震撼场面宏大\n" is 16
    assert "特效震撼场面宏大" in one["prompt"] and one["history_timestamps"] == ["2023-01-01"]
    assert shown(history_budget=16)["history_timestamps"] == ["2023-01-05"]  # the default: newest first
    # then 丁 "好看" (shares 好 with the film's other review), listed oldest first
    assert shown(history_budget=26, history_order="similar")["history_timestamps"] == ["2023-01-01", "2023-01-04"]
    assert shown(history_budget=26)["history_timestamps"] == ["2023-01-04", "2023-01-05"]
