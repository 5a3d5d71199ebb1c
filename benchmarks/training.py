"""Training and generation speed, each figure beside its baseline measured in the same run.

    PYTHONPATH=src python -m benchmarks.training [--model default] [--samples 64] [--steps N] [--out FILE]

Phases run in separate processes so each peak RSS is its own:
- ``matmul``: this machine's fp32 matmul throughput (the peak the SFT figure is a share of);
- ``sft_simtune`` vs ``sft_trl``: SFT on length-varied prompt/response samples, same model,
  data, batch size, steps and seed; simtune's defaults (length-grouped batches, loss on the
  response, only the response positions through the loss's LM head) against TRL
  SFTTrainer's defaults (random batches, LM head over every position on CPU);
  ``sft_simtune_all_positions``: simtune's defaults but TRL's LM head (the share of each
  idea). Figure: real (non-pad) tokens per second, from TRL's own ``num_tokens`` count
  (prompt and response tokens); plus the share of the matmul peak reached (6 x parameters
  x real tokens per second / peak);
- ``predict_batched`` vs ``predict_single``: greedy generation for the same prompts, batched
  (simtune.generation) against one prompt at a time. Figure: generated tokens per second.
- ``predict_vllm`` (only on CUDA with the vllm package installed): the same prompts through
  vLLM, against simtune's batched generation.

``--device auto|cpu|cuda`` (default auto): on CUDA, bf16 where the GPU has it, both sides.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
from pathlib import Path

from benchmarks import Row, device, now, parse_args, peaks, report, run_phase


def length_varied_samples(path: Path, n: int, seed: int = 0) -> Path:
    """Prompt/response pairs whose lengths vary from a few to a few hundred tokens."""
    rng = random.Random(seed)
    words = "post repost comment user follows topic music football pets finance travel food movie".split()
    rows = []
    for i in range(n):
        plen = int(rng.choice([8, 16, 32, 64, 128, 256]) * rng.uniform(0.8, 1.2))
        rlen = rng.randint(4, 48)
        rows.append({"prompt": " ".join(rng.choice(words) for _ in range(plen)),
                     "response": " ".join(rng.choice(words) for _ in range(rlen))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def phase_matmul(n: int = 1024, reps: int = 20) -> dict:
    """Matmul throughput in the training dtype: fp32 on the CPU, bf16 (8192 x 8192) on a GPU."""
    import torch

    from simtune.models import pick_dtype
    dev = device()
    dtype = pick_dtype("auto", dev)
    if dev != "cpu":
        n, reps = 8192, 50
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    t = now()
    for _ in range(reps):
        a @ b
    dt = now() - t
    return {"gflops": 2 * n ** 3 * reps / dt / 1e9, "threads": torch.get_num_threads(), "device": dev,
            "dtype": str(dtype).removeprefix("torch."), **peaks()}


def _sft_metrics(exp_metrics: list[dict], seconds: float, params: int) -> dict:
    """Tokens and time of the training loop alone (the trainer's own ``train_runtime``), so
    loading the model and tokenizing the data count for neither side."""
    toks = [m["num_tokens"] for m in exp_metrics if "num_tokens" in m]
    tokens = float(toks[-1]) if toks else 0.0
    runtimes = [float(m["train_runtime"]) for m in exp_metrics if "train_runtime" in m]
    seconds = runtimes[-1] if runtimes else seconds
    return {"seconds": seconds, "real_tokens": tokens, "real_tokens_per_s": tokens / seconds,
            "train_flops_per_s": 6 * params * tokens / seconds, **peaks()}


def phase_sft(mode: str, model: str, data: str, steps: int, batch: int, work: str) -> dict:
    """mode = simtune (run_stage with simtune's defaults), simtune_all_positions (the same
    but TRL's LM head over every position: length-grouped batches alone) or trl
    (SFTTrainer defaults)."""
    from simtune.stage_configs import SFTConfig
    cfg = SFTConfig.load(None, [], model_name_or_path=model, train_file=data, max_steps=steps,
                         per_device_train_batch_size=batch, report_to=["none"], output_root=work, run_name=mode,
                         logging_steps=1, save_steps=10_000, max_length=512, seed=0,
                         labelled_positions_only=mode == "simtune")
    if mode.startswith("simtune"):
        from simtune.stages import run_stage
        t = now()
        res = run_stage("sft", cfg)
        dt = now() - t
        from simtune.models import count_parameters, load_model
        params = count_parameters(load_model(model, device="cpu"))["total"]
        return {**_sft_metrics(res.experiment.read_metrics(), dt, params), "steps": res.global_step}
    # TRL's defaults: the same model, data and batch size; nothing else set
    import torch
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from simtune.data.formats import load_records, to_dataset
    from simtune.models import count_parameters, load_model, load_tokenizer
    records, _, _ = load_records(data)
    tok = load_tokenizer(model, padding_side="right")
    dev = device()
    m = load_model(model, device=dev)
    kept: list[dict] = []
    from transformers import TrainerCallback

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                kept.append(dict(logs))
    args = TRLSFTConfig(output_dir=str(Path(work) / "trl"), max_steps=steps, per_device_train_batch_size=batch,
                        report_to=[], logging_steps=1, save_strategy="no", max_length=512, seed=0,
                        use_cpu=dev == "cpu", bf16=next(m.parameters()).dtype == torch.bfloat16)
    trainer = SFTTrainer(model=m, args=args, train_dataset=to_dataset(records), processing_class=tok, callbacks=[Keep()])
    t = now()
    trainer.train()
    dt = now() - t
    return {**_sft_metrics(kept, dt, count_parameters(m)["total"]), "steps": trainer.state.global_step}


def bench_prompts(n: int) -> list[str]:
    rng = random.Random(1)
    return [f"Write a short comment about {rng.choice(['cats', 'football', 'stocks', 'a film', 'rain'])} "
            + "please " * rng.randint(0, 30) for _ in range(n)]


def phase_predict(mode: str, model: str, n: int, max_new_tokens: int, batch: int) -> dict:
    from simtune.generation import generate
    from simtune.models import load_model, load_tokenizer
    tok, prompts = load_tokenizer(model), bench_prompts(n)
    if mode == "vllm":
        return phase_predict_vllm(model, tok, prompts, max_new_tokens)
    m = load_model(model, device=device())
    t = now()
    if mode == "batched":
        outs = generate(m, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch)
    else:
        outs = [generate(m, tok, [p], max_new_tokens=max_new_tokens, batch_size=1)[0] for p in prompts]
    dt = now() - t
    gen_tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
    return {"seconds": dt, "generated_tokens": gen_tokens, "tokens_per_s": gen_tokens / dt, "prompts": n, **peaks()}


def vllm_missing() -> str | None:
    """Why the vLLM phase cannot run here, or None."""
    if device() != "cuda":
        return "no CUDA GPU"
    if importlib.util.find_spec("vllm") is None:
        return "vllm not installed"
    return None


def phase_predict_vllm(model: str, tok, prompts: list[str], max_new_tokens: int) -> dict:
    """The same prompts, rendered and tokenized as simtune.generation does, greedy, through
    vLLM (the model's cached safetensors folder; bf16)."""
    from vllm import LLM, SamplingParams

    from simtune.generation import render_prompt
    from simtune.models import local_path
    ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    llm = LLM(model=local_path(model), tokenizer=local_path(model), dtype="bfloat16", seed=0,
              gpu_memory_utilization=0.5)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    t = now()
    outs = llm.generate([{"prompt_token_ids": i} for i in ids], params)
    dt = now() - t
    texts = [o.outputs[0].text for o in outs]
    gen_tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in texts)
    return {"seconds": dt, "generated_tokens": gen_tokens, "tokens_per_s": gen_tokens / dt, "prompts": len(prompts),
            **peaks()}


def _run_phase(args: list[str]) -> dict:
    return run_phase("benchmarks.training", args)


def run_all(model: str, steps: int, batch: int, n_samples: int, n_prompts: int, max_new_tokens: int,
            repeats: int = 1) -> dict:
    """Each phase ``repeats`` times, the sides taking turns; the fastest run of each is kept
    (on a shared machine, other jobs only ever slow a run down). The data and the runs'
    outputs (a few GB of checkpoints per repeat) go to a temporary folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="simtune-bench-") as work:
        return _run_all(work, model, steps, batch, n_samples, n_prompts, max_new_tokens, repeats)


def _run_all(work: str, model: str, steps: int, batch: int, n_samples: int, n_prompts: int, max_new_tokens: int,
             repeats: int) -> dict:
    data = str(length_varied_samples(Path(work) / "sft.jsonl", n_samples))
    res: dict = {"model": model, "steps": steps, "batch": batch, "prompts": n_prompts, "repeats": repeats,
                 "device": device(), "vllm_missing": vllm_missing()}
    phases = {"matmul": ["matmul"]}
    for mode in ("trl", "simtune_all_positions", "simtune"):
        phases[f"sft_{mode}"] = ["sft", "--mode", mode, "--model", model, "--data", data, "--steps", str(steps),
                                 "--batch", str(batch), "--work", work]
    for mode in ("single", "batched") + (() if vllm_missing() else ("vllm",)):
        phases[f"predict_{mode}"] = ["predict", "--mode", mode, "--model", model, "--n", str(n_prompts),
                                     "--max_new_tokens", str(max_new_tokens), "--batch", "8"]
    runs: dict = {k: [] for k in phases}
    for _ in range(repeats):
        for k, args in phases.items():
            runs[k].append(_run_phase(args))
    for k, rs in runs.items():
        speed = "gflops" if k == "matmul" else "tokens_per_s" if k.startswith("predict") else "real_tokens_per_s"
        res[k] = {**max(rs, key=lambda r: r[speed]), "all": [round(r[speed], 2) for r in rs]}
    peak = res["matmul"]["gflops"] * 1e9
    res["summary"] = {
        "sft_speedup_vs_trl": res["sft_simtune"]["real_tokens_per_s"] / res["sft_trl"]["real_tokens_per_s"],
        "sft_grouped_only_vs_trl": (res["sft_simtune_all_positions"]["real_tokens_per_s"]
                                    / res["sft_trl"]["real_tokens_per_s"]),
        "sft_share_of_matmul_peak": res["sft_simtune"]["train_flops_per_s"] / peak,
        "sft_trl_share_of_matmul_peak": res["sft_trl"]["train_flops_per_s"] / peak,
        "predict_speedup_batched": res["predict_batched"]["tokens_per_s"] / res["predict_single"]["tokens_per_s"],
    }
    if "predict_vllm" in res:
        res["summary"]["predict_vllm_vs_batched"] = (res["predict_vllm"]["tokens_per_s"]
                                                     / res["predict_batched"]["tokens_per_s"])
    return res


def _mem(r: dict) -> str:
    return f"{r['peak_rss_mb']:.0f}" + (f" (GPU {r['peak_gpu_mb']:.0f})" if "peak_gpu_mb" in r else "")


def rows(res: dict) -> list[Row]:
    """The rows of the combined table (benchmarks.Row)."""
    s = res["summary"]
    st, trl = res["sft_simtune"], res["sft_trl"]
    mm = res["matmul"]
    on = "" if res.get("device", "cpu") == "cpu" else f", {res['device']} {mm.get('dtype', '')}"
    cond = (f"{res['model']}{on}, batch {res['batch']}, {res['steps']} steps, length-varied samples, "
            f"{res['sft_simtune']['real_tokens']:.0f} vs {res['sft_trl']['real_tokens']:.0f} real tokens")
    mem = " (GPU: peak allocated)" if "peak_gpu_mb" in st else ""
    out = [Row("matmul", f"{mm.get('dtype', 'float32')} matmul peak GFLOP/s{on}", f"{mm['gflops']:.1f}", "", "", ""),
           Row("sft", f"SFT real (non-pad) tokens/s, simtune defaults vs TRL SFTTrainer defaults [{cond}]",
            f"{st['real_tokens_per_s']:.1f}", f"{trl['real_tokens_per_s']:.1f}", f"{s['sft_speedup_vs_trl']:.2f}x",
            ">= 1.3x"),
           Row("sft_grouped", "SFT real tokens/s, length-grouped batches only (LM head over every position, as TRL)",
            f"{res['sft_simtune_all_positions']['real_tokens_per_s']:.1f}", f"{trl['real_tokens_per_s']:.1f}",
            f"{s['sft_grouped_only_vs_trl']:.2f}x", ""),
           Row("sft_share", "SFT share of the matmul peak (6 x params x tokens/s)", f"{s['sft_share_of_matmul_peak']:.1%}",
            f"{s['sft_trl_share_of_matmul_peak']:.1%}", "", ""),
           Row("sft_rss", f"SFT peak RSS MB{mem}", _mem(st), _mem(trl), "", ""),
           Row("generate", f"generation tokens/s, batched vs one prompt at a time [{res['prompts']} prompts{on}]",
            f"{res['predict_batched']['tokens_per_s']:.1f}", f"{res['predict_single']['tokens_per_s']:.1f}",
            f"{s['predict_speedup_batched']:.2f}x", ">= 4x"),
           Row("generate_rss", f"generation peak RSS MB{mem}", _mem(res["predict_batched"]), _mem(res["predict_single"]),
            "", "")]
    if "predict_vllm" in res:
        v = res["predict_vllm"]
        out.append(Row("generate_vllm", "generation tokens/s, vLLM vs simtune batched", f"{v['tokens_per_s']:.1f}",
                    f"{res['predict_batched']['tokens_per_s']:.1f}", f"{s['predict_vllm_vs_batched']:.2f}x", ""))
    else:
        out.append(Row("generate_vllm", f"generation with vLLM: not run ({res.get('vllm_missing') or 'not asked'})",
                    "", "", "", ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase")
    ap.add_argument("--mode")
    ap.add_argument("--model", default="default")
    ap.add_argument("--data")
    ap.add_argument("--work")
    ap.add_argument("--steps", type=int, default=None, help="default: one epoch (samples / batch), so that every "
                    "side trains on the same examples and the same real tokens")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1, help="run every phase N times in turn, keep the fastest of each")
    a = parse_args(ap, argv, "bench_results/training.json")
    if a.phase == "matmul":
        print(json.dumps(phase_matmul()))
        return 0
    if a.phase == "sft":
        print(json.dumps(phase_sft(a.mode, a.model, a.data, a.steps, a.batch, a.work)))
        return 0
    if a.phase == "predict":
        print(json.dumps(phase_predict(a.mode, a.model, a.n, a.max_new_tokens, a.batch)))
        return 0
    res = run_all(a.model, a.steps or a.samples // a.batch, a.batch, a.samples, a.prompts, a.max_new_tokens,
                  a.repeats)
    return report(res, rows(res), a.out)


if __name__ == "__main__":
    sys.exit(main())
