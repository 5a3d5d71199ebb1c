"""`simtune train social who` on a tiny model: both losses fall, the decision is tuned on
the held-out pools and saved with the weights, and evaluation and simulation read it."""
import json

import pytest

from simtune.config import ConfigError
from simtune.recipes.social.model.who_train import WhoTrainConfig, train


def cfg_for(social_data, model_dir, out, *extra):
    return WhoTrainConfig.load(None, ["--model_name_or_path", str(model_dir), "--samples_dir", str(social_data.samples),
                                      "--output_root", str(out), "--max_samples", "10", "--calibration_share", "0.2",
                                      "--who_layer", "2", "--who_train_from", "0", "--text_from_layer", "1",
                                      "--text_share", "1", "--num_train_epochs", "20", "--learning_rate", "1e-2", "--warmup_ratio", "0",
                                      "--per_device_train_batch_size", "4", "--logging_steps", "10",
                                      "--report_to", "none", "--save_steps", "1000", *extra])


def test_who_training_lowers_both_losses_and_saves_its_decision(social_data, tiny_model_dir, tmp_path):
    from simtune.export import load_trained
    from simtune.recipes.social.evaluate import SocialEvalConfig, evaluate
    from simtune.recipes.social.model.decision import WhoDecision
    r = train(cfg_for(social_data, tiny_model_dir, tmp_path / "out"))
    logs = [m for m in r.experiment.read_metrics() if "who_loss" in m]
    assert logs[-1]["who_loss"] < logs[0]["who_loss"] and logs[-1]["text_loss"] < logs[0]["text_loss"]
    summary = json.loads((r.experiment.root / "data_summary.json").read_text())
    assert summary == {"train_pools": 8, "calibration_pools": 2, "with_text": 8}
    model, tok = load_trained(r.final_model_dir, device="cpu")
    dec = WhoDecision.load(r.final_model_dir, model, tok)  # the fingerprint matches the saved weights
    assert dec.calibration["pools"] == 2 and set(dec.thresholds) <= {"0", "1"} and dec.layer == 2
    # and for simulation out of everyone: refitted on the calibration pools' roots asked with every user
    uni = dec.calibration["universe"]
    assert 1 <= uni["roots"] <= 2 and "0" in dec.universe and uni["per_depth"]["0"]["fitted"]
    report = evaluate(SocialEvalConfig.load(None, ["--model", str(r.final_model_dir), "--samples_dir",
                                                   str(social_data.samples), "--out", str(tmp_path / "ev"),
                                                   "--limit", "4", "--reaction_tokens", "12"]))
    m = report["results"]["model"]["all"]
    assert report["who"] == "scorer" and m["valid"] == 1.0 and m["auc"] is not None and m["n"] == 4
    # the numbers prior was fitted on the calibration pools, and its numbers-alone fit is a row of its own
    from simtune.recipes.social.evaluate import NUMBERS_ONLY_ROW
    from simtune.recipes.social.model.prior import FEATURES
    assert len(dec.prior) == len(FEATURES) + 1 and dec.numbers_only["rules"]
    assert set(dec.calibration) >= {"scorer_alone", "numbers_only"}
    assert report["results"][NUMBERS_ONLY_ROW]["all"]["n"] == 4
    recs = [json.loads(x) for x in (tmp_path / "ev" / "predictions.shard0-of-1.jsonl").read_text().splitlines()]
    assert all(len(x["scores"]) > 0 for x in recs)
    # who only (--reactions false): the same users, each with the train split's most common action and text
    quick = evaluate(SocialEvalConfig.load(None, ["--model", str(r.final_model_dir), "--samples_dir",
                                                  str(social_data.samples), "--out", str(tmp_path / "ev2"),
                                                  "--limit", "4", "--reactions", "false"]))
    q = quick["results"]["model"]["all"]
    assert quick["reactions"] is False and "reactions_samples_per_s" not in quick["speed"]
    assert (q["f1"], q["auc"]) == (m["f1"], m["auc"])
    from simtune.recipes.social.baselines import stat_for, train_statistics
    from simtune.recipes.social.evaluate import load_split
    stats = train_statistics(load_split(social_data.samples, "train"))
    rows = {r["sample_id"]: r for r in load_split(social_data.samples, "val")}
    got = [json.loads(x) for x in (tmp_path / "ev2" / "predictions.shard0-of-1.jsonl").read_text().splitlines()]
    for g, full in zip(got, recs):
        st = stat_for(stats, rows[g["sample_id"]]["depth"])
        assert [(e["action"], e["text"]) for e in json.loads(g["completion"])] == \
            [(st["action"], st["text"])] * len(json.loads(g["completion"]))
        assert [e["user"] for e in json.loads(g["completion"])] == [e["user"] for e in json.loads(full["completion"])]


def test_who_config_refuses_what_it_does_not_use(social_data, tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="'who_train_from' \\(2\\) must be below 'who_layer' \\(2\\)"):
        cfg_for(social_data, tiny_model_dir, tmp_path, "--who_train_from", "2")
    with pytest.raises(ConfigError, match="not used by the who stage"):
        cfg_for(social_data, tiny_model_dir, tmp_path, "--freeze_first_n_layers", "1")
    with pytest.raises(ConfigError, match="has 2 layers"):
        train(cfg_for(social_data, tiny_model_dir, tmp_path, "--who_layer", "5", "--who_train_from", "0"))


def test_the_reaction_loss_does_not_shrink_the_who_step(social_data, tiny_model_dir, tmp_path):
    """The two losses train disjoint layers and are clipped apart: with clipping binding
    (max_grad_norm 0.01), the who loss follows the same path with or without the reactions."""
    def who_path(weight, out):
        r = train(cfg_for(social_data, tiny_model_dir, tmp_path / out, "--who_layer", "1", "--text_from_layer", "1",
                          "--num_train_epochs", "3", "--logging_steps", "1", "--max_grad_norm", "0.01",
                          "--text_loss_weight", weight))
        return [m for m in r.experiment.read_metrics() if "who_loss" in m]
    with_text, alone = who_path("1.0", "a"), who_path("0", "b")
    assert all("text_loss" in m for m in with_text) and not any("text_loss" in m for m in alone)
    assert [m["who_loss"] for m in with_text] == pytest.approx([m["who_loss"] for m in alone], rel=1e-4)
    assert all(m["grad_norm"] > 0.01 for m in with_text)  # clipping did bind


def test_the_decision_is_tuned_on_the_splits_newest_pools(social_data, tiny_model_dir, tmp_path):
    """max_samples 10, calibration_share 0.2: the 2 newest pools of the whole train split tune
    the decision (the nearest in time to val), the 8 oldest train; 'spread' spreads those 8."""
    from transformers import AutoTokenizer

    from simtune.recipes.social.evaluate import load_split
    from simtune.recipes.social.model.who import encode_pool
    from simtune.recipes.social.model.who_train import load_pools
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = sorted((r for r in load_split(social_data.samples, "train") if r["depth"] <= 1),
                  key=lambda r: (r["time"], r["sample_id"]))
    enc = lambda r: encode_pool(tok, r["prompt"], r["candidates"], r["true_users"], r["true_actions"],  # noqa: E731
                                r["true_texts"])
    for how in ("oldest", "spread"):
        fit, cal = load_pools(cfg_for(social_data, tiny_model_dir, tmp_path, "--max_samples_from", how), tok)
        assert len(fit) == 8 and [h.pool for h in cal] == [enc(r) for r in rows[-2:]]
        assert [(h.depth, h.root_id) for h in cal] == [(r["depth"], r["root_id"]) for r in rows[-2:]]
        older = [enc(r) for r in rows[:-2]]
        assert [p for p, _ in fit] == (older[:8] if how == "oldest" else [older[int(k * len(older) / 8)] for k in range(8)])
    assert len(rows) > 20  # so 'oldest' and 'spread' differ
