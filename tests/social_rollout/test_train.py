"""A real update on the tiny model (scripted answers with real token ids), resume, and the CLI."""
import json

import pyarrow.parquet as pq
import pytest
import torch

from simtune.recipes.social.model.rollout import (SampleIndex, TreeGRPOConfig, roots_for_step, train,
                                            tree_rollout)
from simtune.recipes.social.model.tree_policy import completion_logps


def truth_by_prompt(corpus):
    t = pq.read_table(corpus / "train.parquet", columns=["prompt", "response"]).to_pylist()
    return {r["prompt"]: r["response"] for r in t}


def cfg_for(tiny_model_dir, corpus, out, **kw):
    base = dict(model_name_or_path=str(tiny_model_dir), samples_dir=str(corpus), output_dir=str(out), device="cpu",
                finetuning_type="full", num_traj_per_root=4, roots_per_update=2, depth_limit=1, max_steps=1,
                learning_rate=1e-4, per_device_train_batch_size=8, save_steps=1, log_completions_every=1, seed=3)
    base.update(kw)
    return TreeGRPOConfig.load(None, [], **base)


def make_answer(truth, rng_draw=False):
    """Even samples answer with the truth (so their children are rolled out too), odd ones with prose."""
    def answer(prompt, j):
        good = j % 2 == 0
        if rng_draw:
            good = bool(torch.rand(1).item() < 0.6)
        return truth.get(prompt, "[]") if good else "no idea"
    return answer


def test_one_update_moves_the_policy_towards_high_reward(tiny_model_dir, corpus, scripted, tmp_path):
    from simtune.stages.common import load_for_training

    cfg = cfg_for(tiny_model_dir, corpus, tmp_path / "run")
    model, tok = load_for_training(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    truth = truth_by_prompt(corpus)
    gen = scripted(tok, make_answer(truth))
    # the same rollout the step will see (the scripted generator is deterministic here)
    index = SampleIndex.load(corpus)
    trajs = tree_rollout(index, roots_for_step(index.roots, 1, 2, cfg.seed), gen, num_traj=4, depth_limit=1)
    ex = [(n.completion.prompt_ids, n.completion.completion_ids, t.advantage) for t in trajs for n in t.nodes]
    assert any(a > 0 for *_, a in ex) and any(a < 0 for *_, a in ex)

    def weighted_logp():
        with torch.no_grad():
            model.eval()
            return sum(a * float(lp.sum()) for (p, c, a), lp in zip(ex, completion_logps(model, [e[:2] for e in ex], 0)))

    w0 = weighted_logp()
    res = train(cfg, generator=gen, model=model, tok=tok)
    assert res.global_step == 1
    assert any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    assert weighted_logp() > w0          # good answers more likely, bad ones less

    m = res.experiment.read_metrics()
    assert [r["step"] for r in m] == [1]
    m = m[0]
    assert m["nodes_d0"] == 8 and m["nodes_d1"] > 0            # truthful trajectories have children
    assert m["nodes_d1"] == sum(1 for t in trajs for n in t.nodes if n.depth == 1)
    assert m["f1_d0"] == pytest.approx(0.5) and m["valid_d0"] == pytest.approx(0.5)
    assert m["clip_frac"] == 0.0 and m["loss"] == pytest.approx(m["loss"]) and m["train_tokens"] > 0
    assert m["tokens_generated"] == sum(len(e[1]) for e in ex)
    assert m["gen_seconds"] >= 0 and m["update_seconds"] > 0
    exp = res.experiment
    assert (exp.checkpoints_dir / "checkpoint-1" / "state.json").is_file()
    assert (exp.final_model_dir / "config.json").is_file()
    rows = [json.loads(x) for x in (exp.samples_dir / "trajectories_step000001.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {"return", "advantage", "nodes"} <= set(rows[0])


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_resume_reaches_the_same_step_and_weights(tiny_model_dir, corpus, scripted, tmp_path):
    """Run 3 steps; then, as if killed after step 2, drop checkpoint-3 and resume: step 3 is
    redone from checkpoint-2 (weights, optimizer, scheduler, RNG) and lands on the same weights."""
    import shutil

    from simtune.stages.common import load_for_training

    truth = truth_by_prompt(corpus)

    calls = []

    def run(resume=False):
        cfg = cfg_for(tiny_model_dir, corpus, tmp_path / "a", max_steps=3, resume=resume, num_iterations=2, num_traj_per_root=2,
                      learning_rate=1e-3, roots_per_update=1)
        model, tok = load_for_training(cfg)
        gen = scripted(tok, make_answer(truth, rng_draw=True))
        res = train(cfg, generator=gen, model=model, tok=tok)
        calls.append(gen.calls)
        return res, _params(model)

    full, p_full = run()
    exp = full.experiment
    times_before = [r["time"] for r in exp.read_metrics()[:2]]
    assert sorted(p.name for p in exp.checkpoints_dir.iterdir()) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    shutil.rmtree(exp.checkpoints_dir / "checkpoint-3")
    shutil.rmtree(exp.final_model_dir)
    resumed, p_res = run(resume=True)
    assert resumed.global_step == 3 and (exp.final_model_dir / "config.json").is_file()
    assert [r["step"] for r in exp.read_metrics()] == [1, 2, 3]      # step 3 logged once, not twice
    for n in p_full:
        torch.testing.assert_close(p_res[n], p_full[n], rtol=0, atol=1e-6)
    # only step 3 was rolled out again (a restart from scratch would land on the same weights too)
    assert 1 <= len(calls[1]) < len(calls[0]) and calls[1] == calls[0][-len(calls[1]):]
    assert [r["time"] for r in exp.read_metrics()[:2]] == times_before
    assert resumed.metrics["return_mean"] == pytest.approx(full.metrics["return_mean"])
    assert resumed.metrics["loss"] == pytest.approx(full.metrics["loss"], abs=1e-6)


def test_config_errors_name_the_key(tmp_path):
    from simtune.config import ConfigError

    with pytest.raises(ConfigError, match="samples_dir"):
        TreeGRPOConfig.load(None, [])
    with pytest.raises(ConfigError, match="reward_weights_social"):
        TreeGRPOConfig.load(None, ["--samples_dir", "x", "--reward_weights_social", "{who: 1}"])
    with pytest.raises(ConfigError, match="eval_strategy"):
        TreeGRPOConfig.load(None, ["--samples_dir", "x", "--eval_strategy", "steps"])
    for key, value in (("beta", "0.1"), ("use_vllm", "true"), ("reward_funcs", "format"), ("num_generations", "4")):
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):  # GRPO's keys that tree GRPO does not take
            TreeGRPOConfig.load(None, ["--samples_dir", "x", f"--{key}", value])
