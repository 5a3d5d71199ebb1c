import json

import pytest

from simtune.cli import main
from simtune.recipes.math.evaluate import baselines, format_table, score

EX = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "7"},
      {"question": "What is 10 minus 2?", "answer": "2"},   # the last number of the question is right
      {"question": "Half of 14?", "answer": "7"},
      {"question": "Double 5?", "answer": "10"}]


def test_three_ways_on_hand_computed_completions():
    completions = [
        "<reasoning>3+4=7</reasoning><answer>7</answer>",      # strict, exact, lenient, formatted
        "<reasoning>10-2</reasoning><answer>8 apples</answer>",  # wrong everywhere, formatted
        "Half of 14 is 7.",                                      # lenient only
        "<reasoning>5*2</reasoning><answer>$10</answer> done",   # strict not exact, formatted; last number 10
    ]
    m, rows = score(EX, completions)
    assert m["n"] == 4
    assert m["strict"] == 0.5 and m["exact"] == 0.25
    assert m["lenient"] == 0.75
    assert m["format_rate"] == 0.75
    assert m["mean_format_reward"] == pytest.approx((0.8 * 3) / 4)
    assert m["mean_correctness_reward"] == pytest.approx((2.0 + 1.5) / 4)
    assert [r["strict"] for r in rows] == [True, False, False, True]


def test_baselines_need_no_model():
    b = baselines(EX)
    assert b["majority_answer"] == "7" and b["majority_accuracy"] == 0.5
    assert b["last_question_number_accuracy"] == 0.25


def test_table_tells_format_gain_from_reasoning_gain():
    base = {"model": "base", "n": 4, "strict": 0.0, "exact": 0.0, "lenient": 0.25, "format_rate": 0.0,
            "mean_format_reward": 0.1, "baselines": baselines(EX)}
    trained = dict(base, model="outputs/x/final_model", strict=0.25, exact=0.25, format_rate=1.0, mean_format_reward=0.8)
    t = format_table([base, trained])
    assert "+25.0pp" in t and "+100.0pp" in t
    assert "reasoning gain (lenient): +0.0pp; format gain (format rate): +100.0pp" in t
    assert "baseline: always '7'" in t and "50.0%" in t


def test_eval_cli_on_tiny_model_writes_results_and_compares(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": e["question"], "answer": f"#### {e['answer']}"}) + "\n"
                            for e in EX))
    out = tmp_path / "ev"
    rc = main(["eval", "math", "--model", str(tiny_model_dir), "--data", str(data), "--limit", "3",
               "--max_new_tokens", "8", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "eval_math.json").read_text())
    assert res["n"] == 3 and set(res) >= {"strict", "lenient", "format_rate", "baselines"}
    samples = [json.loads(l) for l in (out / "eval_math_samples.jsonl").read_text().splitlines()]
    assert [s["gold"] for s in samples] == ["7", "2", "7"] and all(isinstance(s["completion"], str) for s in samples)
    # a random tiny model writes no tags: its strict accuracy and format rate are 0
    assert res["strict"] == 0.0 and res["format_rate"] == 0.0
    capsys.readouterr()
    rc = main(["eval", "math", "--model", str(tiny_model_dir), "--data", str(data), "--limit", "3",
               "--max_new_tokens", "8", "--out", str(tmp_path / "ev2"), "--compare", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "gain" in printed and "+0.0pp" in printed and "baseline: always" in printed
    assert json.loads((tmp_path / "ev2" / "eval_math_compare.json").read_text())["results"][0]["n"] == 3


def test_eval_cli_bad_data_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no marker"}\n')
    assert main(["eval", "math", "--model", "x", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'answer'" in err and "Traceback" not in err
