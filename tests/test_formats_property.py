"""Property tests for the generic training-data readers (JSONL, JSON, CSV, Parquet; every
record kind): random, malformed, truncated, wrongly typed, mis-encoded and very large records
mixed with valid ones. Never an unhandled exception; every record is accounted for: records
in = records out + rejected, and the rejects file holds one line per rejected record, whose
reasons add up to the summary's counts."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simtune.data.formats import KINDS, load_records
from simtune.io import DataError, RejectLog

BIG = "长" * 150_000                      # longer than csv's default field limit (131072)
MOJIBAKE = "微博热搜".encode().decode("latin-1")
SPECIAL = st.sampled_from([BIG, MOJIBAKE, "\ud800 lone surrogate", "", "   ", "a,b\n\"c\"", "\ufeffbom", "ok"])
TEXT = st.one_of(st.text(max_size=12), SPECIAL)
GOOD = st.sampled_from(["hello", "你好", "a longer answer"])
MOSTLY_GOOD = st.sampled_from([GOOD, GOOD, TEXT]).flatmap(lambda s: s)
VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**20), st.floats(allow_nan=False), TEXT,
                  st.lists(TEXT, max_size=2))
MESSAGE = st.one_of(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "bot"]), "content": TEXT}),
                    VALUE)
KEYS = ["prompt", "response", "completion", "output", "text", "chosen", "rejected", "messages", "other"]
VALID = st.one_of(
    st.fixed_dictionaries({"prompt": st.just("p"), "response": MOSTLY_GOOD}),
    st.fixed_dictionaries({"text": MOSTLY_GOOD}),
    st.fixed_dictionaries({"prompt": MOSTLY_GOOD, "chosen": st.just("c"), "rejected": st.just("r")}),
    st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=3).map(lambda m: m + [{"role": "assistant", "content": "a"}])}),
)
RANDOM = st.dictionaries(st.sampled_from(KEYS), st.one_of(VALUE, st.lists(MESSAGE, max_size=3)), max_size=4)
RECORD = st.sampled_from([VALID] * 3 + [RANDOM, VALUE]).flatmap(lambda s: s)
KIND = st.sampled_from(["auto"] * 4 + list(KINDS))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


_seen: Counter = Counter()  # per file type: examples in which some record was kept


def check(path, n_in: int, kind: str, whole_file_errors: tuple[str, ...] = ()) -> None:
    """Load ``path`` with a rejects log and check the accounting."""
    rej_path = path.parent / "rejects.jsonl"
    log = RejectLog(rej_path)
    try:
        with log:
            recs, _, s = load_records(path, kind, rejects=log)
    except DataError as e:
        msg = str(e)
        if any(w in msg for w in whole_file_errors):  # the file cannot be read as a whole: named, nothing half-read
            assert msg.startswith(str(path))
            return
        assert f"no usable records ({n_in} read, {n_in} rejected)" in msg, msg
        assert len(rej_path.read_text(encoding="utf-8").splitlines()) == n_in
        return
    assert s["records_in"] == n_in == s["records_out"] + s["rejected"] == len(recs) + log.total
    lines = [json.loads(x) for x in rej_path.read_text(encoding="utf-8").splitlines()] if rej_path.exists() else []
    assert len(lines) == s["rejected"] == sum(s["rejected_by_reason"].values())
    assert all(x["file"] == str(path) and isinstance(x["line"], int) and x["reason"] for x in lines)
    _seen[path.suffix] += bool(recs)
    for r in recs:  # what is kept is what TRL takes
        assert set(r) in ({"text"}, {"prompt", "completion"}, {"prompt", "chosen", "rejected"})
        assert all(isinstance(m["content"], str) for k in r if k != "text" for m in r[k])
        json.dumps(r, ensure_ascii=False).encode("utf-8")  # valid text: it can be written (no lone surrogate)


@SETTINGS
@given(records=st.lists(st.tuples(RECORD, st.sampled_from(["ok"] * 4 + ["cut", "bytes", "junk"]), st.integers(0, 40)),
                        min_size=1, max_size=8),
       kind=KIND)
def test_jsonl(tmp_path_factory, records, kind):
    d = tmp_path_factory.mktemp("jsonl")
    lines = []
    for rec, how, cut in records:
        b = json.dumps(rec).encode()  # ASCII: "\ud800" stays an escape, as other writers leave it
        if how == "cut":
            b = b[:cut] or b"{"
        elif how == "bytes":
            b = b[:cut] + b"\xff\xc3" + b[cut:]  # bytes that are not UTF-8
        elif how == "junk":
            b = json.dumps(rec, ensure_ascii=False).encode("utf-8", "surrogatepass")[:cut] or b"x"
        lines.append(b)
    (d / "d.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    check(d / "d.jsonl", len(lines), kind)


@SETTINGS
@given(records=st.lists(RECORD, min_size=1, max_size=8), wrap=st.booleans(), how=st.sampled_from(["ok", "ok", "cut", "bytes"]),
       kind=KIND)
def test_json(tmp_path_factory, records, wrap, how, kind):
    d = tmp_path_factory.mktemp("json")
    b = json.dumps({"data": records} if wrap else records).encode()
    if how == "cut":
        b = b[:len(b) // 2]
    elif how == "bytes":
        b = b[:1] + b"\xff" + b[1:]
    (d / "d.json").write_bytes(b)
    check(d / "d.json", len(records), kind, whole_file_errors=("bad json", "bad encoding"))


CELL = st.sampled_from([GOOD] * 3 + [st.text(max_size=10), SPECIAL.filter(lambda t: "\ud800" not in t),
                        st.sampled_from(["\udcff\udcfe", "x\udcc3"])]).flatmap(lambda s: s)  # the last: bytes not UTF-8


HEADERS = st.one_of(st.sampled_from([["prompt", "response"], ["text"], ["prompt", "chosen", "rejected"],
                                     ["prompt", "output", "other"]]),
                    st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))


@SETTINGS
@given(header=HEADERS, shapes=st.lists(st.sampled_from(["full"] * 4 + ["short", "long"]), min_size=1, max_size=8),
       data=st.data(), kind=KIND)
def test_csv(tmp_path_factory, header, shapes, data, kind):
    d = tmp_path_factory.mktemp("csv")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for shape in shapes:  # rows of the header's width, short rows, long rows (a stray comma)
        n = len(header) + {"full": 0, "short": -1, "long": 2}[shape]
        w.writerow([data.draw(CELL) for _ in range(n)] or [""])  # quotes and newlines in fields too
    (d / "d.csv").write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))
    check(d / "d.csv", len(shapes), kind)


@SETTINGS
@given(cols=st.one_of(st.sampled_from([{"prompt": "string", "response": "string"}, {"text": "string"},
                                        {"prompt": "string", "chosen": "string", "rejected": "string"}]),
                      st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["string", "int", "list", "binary"]),
                                      min_size=1, max_size=4)),
       n=st.integers(1, 6), data=st.data(), cut=st.sampled_from([False] * 3 + [True]), kind=KIND)
def test_parquet(tmp_path_factory, cols, n, data, cut, kind):
    d = tmp_path_factory.mktemp("parquet")
    make = {"string": (st.sampled_from([GOOD] * 2 + [st.none(), TEXT.filter(lambda t: "\ud800" not in t)]).flatmap(lambda s: s),
                       pa.string()),
            "int": (st.one_of(st.none(), st.integers(-5, 5)), pa.int64()),
            "list": (st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=2)), pa.list_(pa.string())),
            "binary": (st.one_of(st.none(), st.binary(max_size=6)), pa.binary())}
    table = pa.table({c: pa.array([data.draw(make[t][0]) for _ in range(n)], make[t][1]) for c, t in cols.items()})
    pq.write_table(table, d / "d.parquet")
    if cut:
        b = (d / "d.parquet").read_bytes()
        (d / "d.parquet").write_bytes(b[: len(b) // 2])
    check(d / "d.parquet", n, kind, whole_file_errors=("not a readable Parquet file",))


def test_property_examples_included_usable_records(tmp_path_factory):
    # each file type must have had examples with kept records; run alone, it runs them first
    if not _seen:
        for t in (test_jsonl, test_json, test_csv, test_parquet):
            t(tmp_path_factory)
    assert all(_seen[s] >= 1 for s in (".jsonl", ".json", ".csv", ".parquet")), _seen
