"""Pass 1: dates, tree structure, time window, bad input, strict mode, atomic outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtune.io import DataError
from simtune.recipes.social.schema import DateFormatError, is_mojibake, parse_time

T = 1_700_532_000  # 2023-11-21 10:00:00 +0800 = 02:00:00 UTC


@pytest.mark.parametrize("text", [
    "Tue Nov 21 10:00:00 +0800 2023",
    "Tue Nov 21 02:00:00 +0000 2023",
    "Mon Nov 20 21:00:00 -0500 2023",
    "2023-11-21T10:00:00+08:00",
    "2023-11-21T02:00:00Z",
    "2023-11-21T02:00:00.123Z",
    "2023-11-21 10:00:00",        # no zone: Beijing time
    "2023-11-21 10:00",
    "1700532000",
    1700532000,
    1700532000123,                # milliseconds
])
def test_parse_time_forms(text):
    assert parse_time(text) == T


def test_parse_time_ced_month_day_uses_root_year():
    ref = parse_time("2023-11-20 09:00:00")
    assert parse_time("11月21日 10:00", ref_time=ref) == T
    # a December root with a January reply rolls into the next year
    ref_dec = parse_time("2023-12-31 23:00:00")
    assert parse_time("01月01日 01:00", ref_time=ref_dec) == parse_time("2024-01-01 01:00:00")


@pytest.mark.parametrize("bad", ["yesterday", "Tue Foo 21 10:00:00 +0800 2023", "Tue Nov 21 25:00:00 +0800 2023",
                                 "2023-13-01 00:00:00", "", None, True, [], "Tue Nov 21 10:00:00 +08 2023",
                                 # digits that are not decimal: a reject, not a ValueError crash
                                 "Tue Nov 21 1²:00:00 +0800 2023", "2023-11-21T10:00:00+0²:00", "17²0532000",
                                 "Tue Nov 21 10:00:00 +08²0 2023"])
def test_parse_time_rejects_unknown(bad):
    with pytest.raises(DateFormatError):
        parse_time(bad)


def test_mojibake_detection():
    assert is_mojibake("微博热搜".encode("utf-8").decode("latin-1"))
    assert is_mojibake("bad \ufffd char")
    assert not is_mojibake("微博热搜 café naïve 😂")


def test_nested_comments_and_reposts_give_depths_and_parents(mk, build, trees):
    t = mk.T0
    reply2 = mk.item(13, "u4", t + 40, "deep")
    reply = mk.item(12, "u3", t + 30, "reply", comments=[reply2])
    rep_of_rep = mk.item(22, "u6", t + 60, "")
    p = mk.post(1, "u1", t, comments=[mk.item(11, "u2", t + 10, "c1", comments=[reply])],
                reposts=[mk.item(21, "u5", t + 50, "rt", reposts=[rep_of_rep])])
    s, out = build([p])
    (tree,) = trees(out)
    by = {n["id"]: n for n in tree["nodes"]}
    assert tree["nodes"][0] == {"id": "1", "user": "u1", "action": "post", "text": "root post", "time": t,
                                "parent": None, "depth": 0}
    assert (by["11"]["parent"], by["11"]["depth"], by["11"]["action"]) == ("1", 1, "comment")
    assert (by["12"]["parent"], by["12"]["depth"]) == ("11", 2)
    assert (by["13"]["parent"], by["13"]["depth"]) == ("12", 3)
    assert (by["21"]["parent"], by["21"]["depth"], by["21"]["action"]) == ("1", 1, "repost")
    assert (by["22"]["parent"], by["22"]["depth"], by["22"]["action"]) == ("21", 2, "repost")
    assert [n["time"] for n in tree["nodes"]] == sorted(n["time"] for n in tree["nodes"])
    assert s["counts"]["interactions_in"] == 5 == s["counts"]["interactions_out"]


def test_flat_parent_links(mk, build, trees):
    t = mk.T0
    p = mk.post("r", "u1", t, comments=[mk.item("a", "u2", t + 5), mk.item("b", "u3", t + 9, parent="a")])
    _, out = build([p])
    by = {n["id"]: n for n in trees(out)[0]["nodes"]}
    assert by["b"]["parent"] == "a" and by["b"]["depth"] == 2


def test_window_drops_late_interactions_and_their_subtrees(mk, build, trees):
    t = mk.T0
    day = 86400
    late = mk.item(3, "u3", t + 8 * day, "late", comments=[mk.item(4, "u4", t + 8 * day + 5, "under late")])
    p = mk.post(1, "u1", t, comments=[mk.item(2, "u2", t + 6 * day, "in time"), late])
    s, out = build([p], window_days=7)
    (tree,) = trees(out)
    assert [n["id"] for n in tree["nodes"]] == ["1", "2"]
    assert tree["n_dropped_window"] == 2 and s["dropped"]["after_window"] == 2
    assert tree["window_end"] == t + 7 * day
    s2, out2 = build([p], window_days=30, out=out.parent / "b30")
    assert s2["dropped"]["after_window"] == 0 and len(trees(out2)[0]["nodes"]) == 4


def _accounted(s):
    c = s["counts"]
    assert c["posts_in"] == c["posts_out"] + c["posts_rejected"]
    assert c["interactions_in"] == (c["interactions_out"] + c["interactions_rejected"]
                                    + c["interactions_rejected_with_post"] + s["dropped"]["after_window"])


def test_bad_input_goes_to_rejects_with_reason_and_good_records_survive(mk, build, trees):
    t = mk.T0
    good = mk.post(1, "u1", t, comments=[mk.item(11, "u2", t + 1)])
    moj = "微博热搜".encode("utf-8").decode("latin-1")
    lines = [
        good,
        b'{"id": 2, "user": {"id": "u1"}, "text_raw": "trunc',                         # truncated JSON
        {"id": 3, "text_raw": "no user", "created_at": "2023-11-21 10:00:00"},          # missing field
        {"id": 4, "user": "u1", "text_raw": "x", "created_at": "2023-11-21 10:00:00"},   # wrong type
        {"id": 5, "user": {"id": "u1"}, "text_raw": "x", "created_at": "next tuesday"},  # unknown date
        {"id": 6, "user": {"id": "u1"}, "text_raw": moj, "created_at": "2023-11-21 10:00:00"},  # mojibake
        b'{"id": 7, "user": {"id": "u1"}, "text_raw": "\xff\xfe", "created_at": "2023-11-21"}',  # not UTF-8
        [1, 2, 3],                                                                     # not an object
        mk.post(8, "u1", t, comments=[                                                  # item-level problems
            mk.item(81, "u2", t + 1, "ok"),
            mk.item(82, "u3", t + 2, "dangling", parent="nowhere"),
            mk.item(83, "u4", t + 3, "loop a", parent="84"),
            mk.item(84, "u5", t + 4, "loop b", parent="83"),
            mk.item(85, "u6", t + 5, "below the loop", parent="84"),
            {"id": 86, "text_raw": "no user", "created_at": "2023-11-21 10:00:00",
             "comments": [mk.item(87, "u7", t + 9)]},
            mk.item(88, "u8", t - 100, "before its parent"),
            mk.item(81, "u9", t + 6, "duplicate id"),
        ]),
        good,  # duplicate root
    ]
    s, out = build(lines)
    rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = {(r["line"], r["reason"].split(":")[0]) for r in rej}
    for expected in [(2, "bad_json"), (3, "missing_field"), (4, "wrong_type"), (5, "bad_date"), (6, "mojibake"),
                     (7, "bad_encoding"), (8, "wrong_type"), (9, "parent_missing"), (9, "cycle"),
                     (9, "parent_rejected"), (9, "missing_field"), (9, "before_parent"), (9, "duplicate_id"),
                     (10, "duplicate_id")]:
        assert expected in reasons, expected
    assert all(r["file"].endswith("in0.jsonl") for r in rej)
    assert {r["field"] for r in rej if r["line"] == 3} == {"user"}
    out_trees = {tr["root_id"]: [n["id"] for n in tr["nodes"]] for tr in trees(out)}
    assert out_trees == {"1": ["1", "11"], "8": ["8", "81"]}
    c = s["counts"]
    assert (c["posts_in"], c["posts_out"], c["posts_rejected"]) == (10, 2, 8)
    assert s["rejected_by_reason"]["cycle"] == 2 and s["rejected_by_reason"]["parent_rejected"] == 2
    assert sum(s["rejected_by_reason"].values()) == len(rej)
    _accounted(s)


def test_strict_stops_at_first_bad_record_with_file_line_field(mk, build, tmp_path):
    t = mk.T0
    lines = [mk.post(1, "u1", t), {"id": 2, "user": {"id": "u1"}, "text_raw": "x", "created_at": "soon"},
             {"id": 3, "text_raw": "x"}]
    with pytest.raises(DataError) as e:
        build(lines, strict=True)
    assert e.value.line == 2 and e.value.field == "created_at" and "in0.jsonl:2" in str(e.value)
    assert not (tmp_path / "build").exists()


def test_interrupted_run_leaves_no_complete_looking_output(mk, build, tmp_path, monkeypatch):
    from simtune.recipes.social.data import weibo

    t = mk.T0
    lines = [mk.post(i, "u1", t + i, comments=[mk.item(100 + i, "u2", t + i + 1)]) for i in range(50)]
    real = weibo.WeiboParser.add_line
    calls = {"n": 0}

    def boom(self, file, line, raw):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return real(self, file, line, raw)

    monkeypatch.setattr(weibo.WeiboParser, "add_line", boom)
    with pytest.raises(KeyboardInterrupt):
        build(lines)
    assert not (tmp_path / "build").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-build")]


def test_profiles_id_map_and_several_inputs(mk, build, tmp_path):
    import pyarrow.parquet as pq

    t = mk.T0
    idm = tmp_path / "idmap.json"
    idm.write_text(json.dumps({"raw1": "alice", "raw2": "bob"}))
    f1 = [mk.post(1, "raw1", t, comments=[mk.item(11, "raw2", t + 1)])]
    f2 = [mk.post(2, "raw2", t + 5, comments=[mk.item(21, "carol", t + 6)])]
    profiles = {"alice": {"interests": ["food", "travel"], "description": "likes noodles"},
                "bob": {"interests": "music, tech"}, "dave": "not an object"}
    s, out = build([f1, f2], profiles=profiles, id_map=str(idm))
    u = pq.read_table(out / "users.parquet").to_pylist()
    by = {r["user_id"]: r for r in u}
    assert set(by) == {"alice", "bob", "carol"}
    assert json.loads(by["bob"]["profile"])["interests"] == ["music", "tech"]
    assert (by["alice"]["n_posts"], by["alice"]["n_comments"], by["bob"]["n_comments"]) == (1, 0, 1)
    assert by["carol"]["profile"] is None and json.loads(by["carol"]["early_texts"])[0][1] == "hi"
    assert s["counts"]["profiles_rejected"] == 1 and s["counts"]["posts_out"] == 2
    assert len(s["inputs"]) == 2


def test_replies_of_a_duplicate_item_are_orphaned_not_reattached(mk, build, trees):
    t = mk.T0
    p = mk.post(1, "u1", t, comments=[
        mk.item(11, "u2", t + 1, "first"),
        mk.item(11, "u3", t + 2, "same id again", comments=[mk.item(12, "u4", t + 3, "reply to the duplicate")]),
        mk.item(13, "u5", t + 4, "flat child", parent="11", comments=[mk.item(14, "u6", t + 5, "nested under flat")]),
    ])
    s, out = build([p])
    by = {n["id"]: n for n in trees(out)[0]["nodes"]}
    assert set(by) == {"1", "11", "13", "14"} and by["11"]["user"] == "u2"
    assert (by["13"]["parent"], by["13"]["depth"]) == ("11", 2)
    assert (by["14"]["parent"], by["14"]["depth"]) == ("13", 3)
    assert s["rejected_by_reason"] == {"duplicate_id": 1, "parent_rejected": 1}
    _accounted(s)


def test_nested_reply_list_of_wrong_type_is_rejected_not_fatal(mk, build, trees):
    t = mk.T0
    p = mk.post(1, "u1", t, comments=[mk.item(11, "u2", t + 1, "ok", comments=5),
                                      mk.item(12, "u3", t + 2, "ok", replies={"a": 1})])
    s, out = build([p])
    assert [n["id"] for n in trees(out)[0]["nodes"]] == ["1", "11", "12"]
    assert s["rejected_by_reason"] == {"wrong_type": 2}
    _accounted(s)


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("tail", [b"", b"\n", b"\n\n  \n"])
def test_line_chunks_cover_every_line_once_with_its_number(tmp_path, size, tail):
    from simtune.recipes.social.data.weibo import line_chunks, read_chunk

    body = b'{"a": 1}\n\n  \n{"b": "x\\ny"}\r\n' + b"z" * 100 + b"\n{\"c\": 3}\n" + b"last line" + tail
    f = tmp_path / "in.jsonl"
    f.write_bytes(body)
    chunks = list(line_chunks(str(f), size))
    got = [x for ch in chunks for x in read_chunk(ch)]
    with open(f, "rb") as fh:  # what reading the whole file line by line gives
        assert got == [(no, line) for no, line in enumerate(fh, 1) if line.strip()]
    assert [n for n, _ in got] == [1, 4, 5, 6, 7]
    assert sum(c[2] for c in chunks) == len(body) and all(c[2] > 0 for c in chunks)
