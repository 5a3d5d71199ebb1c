import json

import pytest

from simtune.io import DataError
from simtune.recipes.math.data import SAMPLE_PATH, SYSTEM_PROMPT, iter_examples, load_examples, prepare


def write_lines(path, lines):
    path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"question": "What is 2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"})


def test_prepare_writes_prompts_and_normalized_gold(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [
        GOOD,
        json.dumps({"question": "Big?", "answer": "lots\n#### 1,200"}),
        json.dumps({"question": "Neg?", "answer": "#### -4"}),
    ])
    res = prepare(src, tmp_path / "out.jsonl")
    assert res["written"] == 3 and res["rejected"] == 0
    assert (tmp_path / "out.rejects.jsonl").read_bytes() == b""  # written on every run, empty when none
    recs = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in recs] == ["5", "1200", "-4"]
    p = recs[0]["prompt"]
    assert p[0] == {"role": "system", "content": SYSTEM_PROMPT} and p[1] == {"role": "user", "content": "What is 2+3?"}
    for tag in ("<reasoning>", "</reasoning>", "<answer>", "</answer>"):
        assert tag in p[0]["content"]
    assert recs[1]["question"] == "Big?"
    # a prepared file reads back as itself (eval and train accept either)
    assert load_examples(tmp_path / "out.jsonl") == recs


def test_bad_lines_rejected_with_line_numbers_and_counted(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [
        GOOD,
        "{not json",
        json.dumps({"question": "No marker", "answer": "just 5"}),
        json.dumps({"answer": "#### 5"}),
        json.dumps({"question": "Word", "answer": "#### five"}),
        "[1, 2]",
        GOOD,
    ])
    res = prepare(src, tmp_path / "out.jsonl")
    assert res["written"] == 2 and res["rejected"] == 5
    rej = [json.loads(l) for l in open(res["rejects_file"])]
    assert [r["line"] for r in rej] == [2, 3, 4, 5, 6]
    assert rej[1]["field"] == "answer" and "####" in rej[1]["reason"]
    assert rej[2]["field"] == "question"
    assert res["rejects_by_reason"]["bad JSON"] == 1
    # a second clean run replaces the stale rejects file with an empty one
    write_lines(src, [GOOD])
    assert prepare(src, tmp_path / "out.jsonl")["rejected"] == 0
    assert (tmp_path / "out.rejects.jsonl").read_bytes() == b""


def test_strict_stops_at_first_bad_line_naming_file_line_field(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [GOOD, json.dumps({"question": "q", "answer": "no marker"})])
    with pytest.raises(DataError) as e:
        prepare(src, tmp_path / "out.jsonl", strict=True)
    assert f"{src}:2: field 'answer'" in str(e.value)
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_limit_offset_and_shipped_slice():
    all_ = load_examples(SAMPLE_PATH)
    assert len(all_) == 64
    assert all_[0]["answer"] == "72" and all_[1]["answer"] == "10"
    assert load_examples(SAMPLE_PATH, limit=5, offset=60) == all_[60:64][:5]
    assert (SAMPLE_PATH.parent / "LICENSE.gsm8k").read_text().count("MIT") >= 1


def test_prepared_file_with_bad_prompt_is_rejected(tmp_path):
    src = write_lines(tmp_path / "p.jsonl", [json.dumps({"prompt": "", "answer": "3"}),
                                             json.dumps({"prompt": "hi", "answer": "x"})])
    with pytest.raises(DataError, match=":1: field 'prompt'"):
        list(iter_examples(src))
    from simtune.io import RejectLog
    rl = RejectLog()
    assert list(iter_examples(src, rl)) == [] and rl.total == 2


@pytest.mark.shared_data
def test_full_train_set_prepares_cleanly(shared_data, tmp_path):
    res = prepare(shared_data / "gsm8k" / "train.jsonl", tmp_path / "train.jsonl")
    assert res["written"] == 7473 and res["rejected"] == 0


def test_sft_warm_start_records(tmp_path):
    from simtune.recipes.math.data import formatted_solution, prepare_sft
    from simtune.recipes.math.rewards import correctness_score, format_score, well_formed
    sol = "She sold 48/2 = <<48/2=24>>24 in May.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"
    f = formatted_solution(sol)
    assert f == "<reasoning>\nShe sold 48/2 = 24 in May.\nIn all 48+24 = 72.\n</reasoning>\n<answer>\n72\n</answer>"
    # the warm-start target earns the full reward
    assert correctness_score(f, "72") == 2.0 and format_score(f) == pytest.approx(0.8) and well_formed(f)
    assert formatted_solution("no marker") is None
    src = write_lines(tmp_path / "in.jsonl", [GOOD, "{bad", GOOD])
    res = prepare_sft(src, tmp_path / "sft.jsonl", limit=5)
    assert res["written"] == 2 and res["rejected"] == 1
    msgs = json.loads((tmp_path / "sft.jsonl").read_text().splitlines()[0])["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[2]["content"].endswith("<answer>\n5\n</answer>")
