"""The social commands run on the real CED cascades in ../shared/data/weibo-ced (a few)."""
import json

import pytest

from simtune.stage_configs import SFTConfig
from simtune.recipes.social.evaluate import SocialEvalConfig, evaluate, load_split
from simtune.recipes.social.pipeline import prepare
from simtune.recipes.social.simulate import SimulateConfig, run
from simtune.stages import run_stage


@pytest.mark.shared_data
def test_build_samples_train_eval_simulate_on_real_cascades(shared_data, tiny_model_dir, tmp_path):
    data = prepare(tmp_path / "ced", synthetic=False, ced_dir=str(shared_data / "weibo-ced"), ced_limit=6,
                   k_ranges=[[0, 1], [1, 2]], max_pool=60)
    train = load_split(data.samples, "train")
    assert train and max(r["depth"] for r in train) >= 1  # replies to replies exist in real cascades
    res = run_stage("sft", SFTConfig.load(None, [
        "--model_name_or_path", str(tiny_model_dir), "--train_file", str(data.samples / "train.parquet"),
        "--max_samples", "4", "--max_steps", "1", "--max_length", "4096", "--report_to", "none",
        "--output_root", str(tmp_path / "out")]))
    report = evaluate(SocialEvalConfig.load(None, [], model=str(res.final_model_dir), samples_dir=str(data.samples),
                                            split="train", out=str(tmp_path / "ev"), limit=3, max_new_tokens=4))
    assert {"model", "baseline: random", "baseline: all", "baseline: history", "baseline: profile"} <= set(report["results"])
    row = train[0]  # (depth-0 pools of real cascades are mostly above max_pool and skipped)
    with open(data.build / "trees.jsonl", encoding="utf-8") as fh:
        rec = next(json.loads(l) for l in fh if json.loads(l)["root_id"] == row["root_id"])
    (tmp_path / "post.json").write_text(json.dumps(rec, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "pool.json").write_text(json.dumps({u: "weibo user" for u in row["candidates"][:5]}), encoding="utf-8")
    sim = run(SimulateConfig.load(None, [], model=str(res.final_model_dir), post=str(tmp_path / "post.json"),
                                  pool=str(tmp_path / "pool.json"), max_new_tokens=4, out=str(tmp_path / "sim.json")))
    assert sim["real_stats"]["size"] == len(rec["nodes"]) - 1 and "comparison_md" in sim
