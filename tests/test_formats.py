"""Generic record files: JSONL, JSON (list or {"data": [...]}), CSV, Parquet; templates."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simtune.data.formats import load_records, read_records
from simtune.io import DataError, RejectLog

ROWS = [{"prompt": "p1", "response": "r1"}, {"prompt": "p2", "response": "r2"}]


def expected(p, r):
    return {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": r}]}


@pytest.mark.parametrize("kind", ["jsonl", "json_list", "json_data", "csv", "parquet"])
def test_every_file_type_reads_the_same_records(tmp_path, kind):
    if kind == "jsonl":
        f = tmp_path / "d.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif kind == "json_list":
        f = tmp_path / "d.json"
        f.write_text(json.dumps(ROWS))
    elif kind == "json_data":
        f = tmp_path / "d.json"
        f.write_text(json.dumps({"data": ROWS}))
    elif kind == "csv":
        f = tmp_path / "d.csv"
        f.write_text("prompt,response\np1,r1\np2,r2\n")
    else:
        f = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(ROWS), f)
    recs, kind_found, summary = load_records(f)
    assert kind_found == "prompt_response" and recs == [expected("p1", "r1"), expected("p2", "r2")]
    assert summary["records_in"] == summary["records_out"] == 2


def test_templates_fill_prompt_and_response(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n")
    recs, _, _ = load_records(f, prompt_template="Answer: {prompt}", response_template="{response}.")
    assert recs == [expected("Answer: p1", "r1.")]
    with pytest.raises(DataError, match="unknown placeholder"):
        load_records(f, prompt_template="Q: {question}")


def test_kinds_text_preference_messages(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "p", "chosen": "good", "rejected": "bad"}) + "\n")
    recs, kind, _ = load_records(f)
    assert kind == "preference" and recs[0]["chosen"][0]["content"] == "good"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
    recs, kind, _ = load_records(f)
    assert kind == "messages" and recs[0] == {"prompt": [{"role": "user", "content": "hi"}],
                                               "completion": [{"role": "assistant", "content": "yo"}]}
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'messages': the last message must be the assistant's"):
        load_records(f)


def test_csv_error_names_the_row_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("prompt,response\np1,r1\np2,\n")
    with pytest.raises(DataError, match=r"d.csv:3: field 'response': empty string"):
        load_records(f)
    log = RejectLog()
    recs, _, summary = load_records(f, rejects=log)
    assert len(recs) == 1 and summary["rejected"] == 1 and log.counts == {"empty string": 1}


def test_unsupported_and_bad_json(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        list(read_records(tmp_path / "d.txt"))
    (tmp_path / "d.json").write_text('{"rows": []}')
    with pytest.raises(DataError, match=r'a .json file must hold a list'):
        list(read_records(tmp_path / "d.json"))
