"""Property tests for review ingest (JSON form and Douban CSV): random, malformed, wrongly
typed, mis-encoded and very large records mixed with valid ones. Never an unhandled exception;
a file that cannot be read as a whole is a DataError naming it; otherwise every record is
accounted for (records in = reviews + rejected, one rejects line each) and what is kept is
clean text that the later steps can write."""
from __future__ import annotations

import csv
import io
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simtune.io import DataError, RejectLog, is_mojibake
from simtune.recipes.reviews.ingest import DOUBAN_COLUMNS, load_reviews
from simtune.recipes.reviews.samples import PromptOptions, build_samples, split_corpus

BIG = "长" * 150_000                       # longer than csv's default field limit
MOJIBAKE = "好看的电影".encode().decode("latin-1")
TEXT = st.one_of(st.text(max_size=10), st.sampled_from([BIG, MOJIBAKE, "", "  ", "好看", "a,\"b\"\nc", "x\ufffd"]))
VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=False), TEXT,
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


def check_kept(corpus) -> None:
    """Kept reviews are clean and the samples built from them can be written as UTF-8 JSON."""
    for r in corpus.reviews:
        assert isinstance(r.text, str) and r.text.strip() and isinstance(r.film, str) and r.film
        assert r.rating in (None, 1, 2, 3, 4, 5)
    sp = split_corpus(corpus, (0.5, 0.0, 0.5), min_reviews=2)
    for s in build_samples(corpus, sp, PromptOptions(history_budget=10_000)):
        json.dumps(s, ensure_ascii=False).encode("utf-8")


def accounted(corpus, log: RejectLog, rej_path, n_in: int) -> None:
    assert corpus.records_in == n_in == len(corpus.reviews) + log.total
    lines = rej_path.read_text(encoding="utf-8").splitlines() if rej_path.exists() else []
    assert len(lines) == log.total == sum(log.counts.values())
    check_kept(corpus)


# --------------------------------------------------------------------------- JSON form

GOOD_ITEM = st.fixed_dictionaries({"continuation": st.sampled_from(["真不错", "一般", BIG]),
                                   "continuation_prefix": st.sampled_from(["电影名: 甲", "电影名: 乙", "片名：《丙》"]),
                                   "timestamp": st.sampled_from(["2023-01-01", "2023-01-02 10:00:00", "2023-02-01"])},
                                  optional={"rating": st.sampled_from([1, 5, 3.4, "4", None])})
BAD_ITEM = st.fixed_dictionaries({"continuation": st.one_of(TEXT, VALUE),
                                  "continuation_prefix": st.one_of(st.sampled_from(["电影名: 甲", "电影名: ", MOJIBAKE]), VALUE),
                                  "timestamp": st.one_of(st.sampled_from(["2023-01-01", "2023-13-01", ""]), VALUE)},
                                 optional={"rating": st.one_of(st.sampled_from([9, 0, True, "x", float("inf")]), VALUE),
                                           "context": VALUE})
ITEM = st.sampled_from([GOOD_ITEM] * 4 + [BAD_ITEM] * 4 + [VALUE] * 2).flatmap(lambda s: s)  # weights: 4 / 4 / 2
COLL = st.one_of(st.fixed_dictionaries({"type": st.just("movie_review"), "data": st.lists(ITEM, min_size=1, max_size=5)}),
                 st.fixed_dictionaries({"type": st.sampled_from(["movie_rating", 3]), "data": st.lists(ITEM, max_size=2)}))
USER = st.fixed_dictionaries({"name": st.sampled_from(["甲", "乙", "丙", "丁", "戊", "己"] * 3 + [MOJIBAKE, "", 5]),
                              "colls": st.lists(COLL, min_size=1, max_size=3),
                              "extra": st.dictionaries(st.sampled_from(["城市", "简介"]), st.one_of(
                                  st.sampled_from(["杭州", "爱看电影"] * 4 + [MOJIBAKE, "x\ufffd"]), TEXT), max_size=2),
                              "broken": st.sampled_from([None] * 16 + ["no_task", "colls_not_list", "not_object", "data_not_list"])})


def _entry(u: dict):
    if u["broken"] == "not_object":
        return ["a list, not a user"]
    colls = [dict(c) for c in u["colls"]]
    if u["broken"] == "data_not_list" and colls and colls[0]["type"] == "movie_review":
        colls[0]["data"] = "not a list"
    task = {"description": "写影评", "task_behavior_collections": "x" if u["broken"] == "colls_not_list" else colls}
    e = {"user": {"profile": {"name": u["name"], **u["extra"]}}}
    if u["broken"] != "no_task":
        e["task"] = task
    return e


_seen = {"read": 0, "kept": 0}


def _user_error(users: list[dict]) -> bool:
    """Whether some user entry is bad as a whole (the loader then stops with a DataError)."""
    seen = set()
    for u in users:
        if u["broken"] and not (u["broken"] == "data_not_list" and not (u["colls"] and u["colls"][0]["type"] == "movie_review")):
            return True
        name = str(u["name"]).strip()  # a number is a name too
        if not name or name in seen or any(is_mojibake(v) for v in [name, *u["extra"].values()]):
            return True
        seen.add(name)
    return False


@SETTINGS
@given(users=st.lists(USER, min_size=1, max_size=3), how=st.sampled_from(["ok"] * 8 + ["cut", "bytes", "escape"]))
def test_json_form(tmp_path_factory, users, how):
    d = tmp_path_factory.mktemp("rvjson")
    b = json.dumps([_entry(u) for u in users], ensure_ascii=False).encode()
    if how == "cut":
        b = b[: len(b) // 2]
    elif how == "bytes":
        b = b[:1] + b"\xff" + b[1:]
    elif how == "escape":  # a lone surrogate in a review: valid JSON, not valid text
        b = b.replace("真不错".encode(), b"\\ud800", 1)
    f = d / "r.json"
    f.write_bytes(b)
    log = RejectLog(d / "rejects.jsonl")
    try:
        with log:
            corpus = load_reviews(f, log)
    except DataError as e:
        assert str(e).startswith(str(f)) and (how in ("cut", "bytes") or _user_error(users)), str(e)
        return
    assert how not in ("cut", "bytes") and not _user_error(users)
    _seen["read"] += 1
    _seen["kept"] += bool(corpus.reviews)
    n_in = sum(len(c["data"]) for u in users for c in u["colls"] if c["type"] == "movie_review")
    accounted(corpus, log, d / "rejects.jsonl", n_in)


def test_json_form_examples_included_readable_files_with_reviews(tmp_path_factory):
    # the property test must not have tested only broken files
    if not _seen["read"]:
        test_json_form(tmp_path_factory)  # run alone: run the property test first
    assert _seen["read"] >= 3 and _seen["kept"] >= 1, _seen


# --------------------------------------------------------------------------- Douban CSV

ROW = st.one_of(
    st.fixed_dictionaries({"seen": st.just("1"), "username": st.text(max_size=4), "id": st.sampled_from(["ua", "ub", "uc", "", " "]),
                           "time": st.sampled_from(["2022-01-01 10:00:00", "2022-02-03 11:00:00", "2022-01-05", "2022/13/45", ""]),
                           "location": st.one_of(st.sampled_from(["北京", "", MOJIBAKE]), st.text(max_size=3)),
                           "votes": st.just("1"), "star": st.sampled_from(["10", "50", "", "35", "x", "40"]),
                           "comment": TEXT}),
    st.lists(st.text(max_size=4), min_size=1, max_size=10),   # a row with the wrong number of fields
    st.just("raw bytes"))                                      # a row that is not UTF-8


@SETTINGS
@given(files=st.dictionaries(st.sampled_from(["101", "102", "999"]),
                             st.one_of(st.lists(ROW, max_size=6), st.just("empty")), min_size=1, max_size=3),
       extra_col=st.booleans())
# a comment over two lines (the columns are reversed here: the comment comes first) whose
# second line, the end of the row, has the shape of a row: one row, not a merged one
@example(files={"101": [{"seen": "1", "username": "", "id": "ua", "time": "2022-01-01 10:00:00", "location": "北京",
                         "votes": "1", "star": "10", "comment": "\n0"}]}, extra_col=False)
def test_douban_csv(tmp_path_factory, files, extra_col):
    d = tmp_path_factory.mktemp("douban")
    (d / "details").mkdir()
    (d / "info.csv").write_text("id,name\n101,甲片\n102,乙片\n", encoding="utf-8")  # 999 is not in it
    header = DOUBAN_COLUMNS[::-1] + (["extra"] if extra_col else [])
    n_in = 0
    for fid, rows in files.items():
        if rows == "empty":
            (d / "details" / f"{fid}.csv").write_bytes(b"")
            continue
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        for r in rows:
            if r == "raw bytes":
                w.writerow(["1", "名", "ua\udcff", "2022-01-01 10:00:00", "", "1", "40", "好\udcc3"] + [""] * extra_col)
            elif isinstance(r, dict):
                w.writerow([r.get(c, "") for c in header])
            else:
                w.writerow(r)
            n_in += 1
        (d / "details" / f"{fid}.csv").write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))
    log = RejectLog(d / "rejects.jsonl")
    with log:
        corpus = load_reviews(d, log)
    accounted(corpus, log, d / "rejects.jsonl", n_in)
    assert corpus.notes == {"unknown_films": int("999" in files),
                            "empty_files": sum(1 for v in files.values() if v == "empty")}
    assert len({(r.user_id, r.film_id) for r in corpus.reviews}) == len(corpus.reviews)
