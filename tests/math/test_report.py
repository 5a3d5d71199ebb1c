"""`simtune report` on metrics.jsonl files written here: a GRPO run, an SFT run, a resumed run."""
import json

import pytest

from simtune.cli import main
from simtune.io import DataError
from simtune.report import read_metrics, write_report

PNGS = ["loss.png", "reward.png", "output_length.png", "loss_vs_reward.png", "training_progress.png"]


def grpo_lines(steps, t0=1000.0):
    out = []
    for s in steps:
        fmt, corr = 0.1 * s, 0.5 if s == 3 else 0.0
        out.append({"step": s, "time": t0 + 10 * s, "loss": 1.0 / s, "reward": fmt + corr, "reward_std": 0.1,
                    "rewards/math_correctness/mean": corr, "rewards/math_correctness/std": 0.0,
                    "rewards/math_format/mean": fmt, "rewards/math_format/std": 0.05,
                    "completions/mean_length": 40 + s, "completions/min_length": 30, "completions/max_length": 48,
                    "kl": 0.01 * s, "clip_ratio/region_mean": 0.0, "learning_rate": 1e-5, "grad_norm": 0.5})
    return out


def write_metrics(folder, recs, extra_text=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + extra_text)
    return folder


def test_grpo_report_plots_and_summary(tmp_path):
    recs = grpo_lines(range(1, 6))
    recs.append({"step": 5, "time": 1060.0, "train_runtime": 55.0, "train_loss": 0.45})  # trainer's end-of-run line
    exp = write_metrics(tmp_path / "run", recs, extra_text='{"step": 6, "loss": 0.1')  # a torn last line
    s = write_report(exp)
    for name in PNGS:
        data = (exp / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    assert s["plots_skipped"] == {}
    on_disk = json.loads((exp / "report" / "summary.json").read_text())
    assert on_disk["plots"] == s["plots"] == PNGS
    m = on_disk["metrics"]
    assert m["loss"]["first"] == 1.0 and m["loss"]["last"] == pytest.approx(0.2)
    assert m["loss"]["best"] == pytest.approx(0.2) and m["loss"]["best_step"] == 5
    assert m["reward"]["best"] == pytest.approx(0.8) and m["reward"]["best_step"] == 3  # 0.3 + 0.5
    assert m["rewards/math_format/mean"]["first"] == pytest.approx(0.1)
    assert m["rewards/math_format/mean"]["last"] == pytest.approx(0.5)
    assert "best" not in m["completions/mean_length"]  # length has no better direction
    assert on_disk["steps"] == {"first": 1, "last": 5, "records": 5, "gaps": []}
    assert on_disk["wall_time_s"] == pytest.approx(50.0)
    assert on_disk["read"]["bad_lines"] == 1
    assert on_disk["end_of_run"]["train_runtime"] == 55.0
    assert "train_runtime" not in m


def test_sft_folder_gets_loss_only_and_says_what_it_skipped(tmp_path):
    exp = write_metrics(tmp_path / "sft", [{"step": s, "loss": 2.0 - 0.1 * s, "learning_rate": 5e-5,
                                             "mean_token_accuracy": 0.1 * s} for s in range(1, 4)])
    s = write_report(exp, out_dir=tmp_path / "rep")
    assert (tmp_path / "rep" / "loss.png").is_file() and (tmp_path / "rep" / "training_progress.png").is_file()
    assert not (tmp_path / "rep" / "reward.png").exists()
    assert set(s["plots_skipped"]) == {"reward.png", "output_length.png", "loss_vs_reward.png"}
    assert "reward" in s["plots_skipped"]["reward.png"]
    assert s["metrics"]["mean_token_accuracy"]["best_is"] == "max"
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["plots_skipped"] == s["plots_skipped"]


def test_resumed_history_merges_repeats_and_reports_gaps(tmp_path):
    # steps 1-4, then a resume from checkpoint-3 that re-logs 4, then 5-6; and a run missing 8
    recs = grpo_lines([1, 2, 3, 4]) + grpo_lines([4, 5, 6], t0=2000.0) + grpo_lines([7, 9])
    exp = write_metrics(tmp_path / "r", recs)
    merged, stats = read_metrics(exp / "metrics.jsonl")
    assert [r["step"] for r in merged] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert stats["duplicate_steps"] == 1
    assert merged[3]["time"] == 2040.0  # the later line wins
    s = write_report(exp)
    assert s["steps"]["gaps"] == [[7, 9]]


def test_report_cli_errors_and_output(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such experiment folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    exp = write_metrics(tmp_path / "ok", grpo_lines([1, 2]))
    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "rewards/math_format/mean" in out and "summary.json" in out
    with pytest.raises(DataError, match="no metric line with a step"):
        write_report(write_metrics(tmp_path / "nostep", [{"loss": 1.0}]))
