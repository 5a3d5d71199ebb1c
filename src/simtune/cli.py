"""`simtune <group> <command> ...`: one entry point, no logic.

Each command is a ``module:function`` that takes the remaining argv and parses it
itself. Modules are imported only when their command runs, so ``simtune --help``
stays instant (torch is never imported for it).
"""
from __future__ import annotations

import importlib
import os
import sys

# (words, "module:function", help). Keep each area's lines together.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    # -- foundation
    (("demo",), "simtune.demo:main", "run the main job end to end on the embedded default model and data"),
    (("model", "info"), "simtune.models:cli_info", "load a model (path, hub id, .gguf, 'default') and print what it is"),
    (("model", "convert"), "simtune.models:cli_convert", "convert a GGUF file (or 'default') to a cached HF folder"),
    (("train",), "simtune.stages:cli_train", "train a stage: simtune train <cpt|sft|reward|dpo|grpo|distill> --config FILE [--key value]"),
    # -- social data
    (("data", "social", "build"), "simtune.recipes.social.commands:cli_build", "raw Weibo API lines / CED -> interaction trees + user index"),
    (("data", "social", "samples"), "simtune.recipes.social.commands:cli_samples", "trees -> SFT samples (prompt/response), chronological splits"),
    (("data", "social", "grpo"), "simtune.recipes.social.commands:cli_grpo", "SFT samples -> GRPO prompts with ground truth"),
    (("data", "social", "synth"), "simtune.recipes.social.commands:cli_synth", "write the seeded synthetic Weibo-style corpus (demo data)"),
    # -- social model
    (("eval", "social"), "simtune.recipes.social.evaluate:cli_eval", "who/action/text per depth beside random, all and history baselines"),
    (("simulate",), "simtune.recipes.social.simulate:cli_simulate", "simulate a whole cascade for a new post (breadth first); --against a real one"),
    # -- reviews recipe (a user's review style from their dated history)
    (("data", "reviews", "inspect"), "simtune.recipes.reviews.commands:cmd_inspect", "review data: counts, splits, time ranges, a few prompts"),
    (("data", "reviews", "build"), "simtune.recipes.reviews.commands:cmd_build", "review data: write the train/val/test JSONL and test_samples.json"),
    (("train", "reviews"), "simtune.recipes.reviews.commands:cmd_train", "SFT a review model (--no_profile --no_history --with_rating)"),
    (("eval", "reviews"), "simtune.recipes.reviews.commands:cmd_eval", "generate for the test split; BLEU/ROUGE/length/sentiment beside two baselines"),
    (("ablate", "reviews"), "simtune.recipes.reviews.commands:cmd_ablate", "the four profile/history variants: one table, one plot"),
    # -- toolkit
    (("export",), "simtune.export:cli_export", "write a standalone model folder: --model DIR --out DIR [--merge-lora]"),
    (("chat",), "simtune.chat:cli_chat", "chat with a model in the terminal: simtune chat MODEL [--system S]"),
    # -- social tree GRPO
    (("train", "social", "who"), "simtune.recipes.social.model.who_train:cli_train", "the candidate scorer (who reacts) and the reactions of the chosen"),
    (("train", "social", "tree-grpo"), "simtune.recipes.social.model.rollout:cli_train", "tree-shaped GRPO: the model's own predictions become the next level's parents"),
    # -- math recipe (GRPO on GSM8K) and the general experiment report
    (("data", "math", "prepare"), "simtune.recipes.math.commands:cli_prepare", "GSM8K JSON lines -> GRPO prompts with the <reasoning>/<answer> format"),
    (("data", "math", "sft"), "simtune.recipes.math.commands:cli_prepare_sft", "GSM8K -> SFT warm-start records (worked solutions in the <reasoning>/<answer> format)"),
    (("train", "math"), "simtune.recipes.math.commands:cli_train", "GRPO on GSM8K with the math rewards (configs/math/grpo_default.yaml)"),
    (("eval", "math"), "simtune.recipes.math.commands:cli_eval", "strict / lenient accuracy and format rate on GSM8K; compare base and trained"),
    (("report",), "simtune.report:cli_report", "plots (loss, reward, length, progress) and summary.json for an experiment folder"),
]


def _usage() -> str:
    lines = ["usage: simtune <command> [args]   (simtune <command> --help for a command's options)", "", "commands:"]
    width = max(len(" ".join(w)) for w, _, _ in COMMANDS)
    for words, _, help_ in COMMANDS:
        lines.append(f"  {' '.join(words):<{width}}  {help_}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from simtune import __version__
        print(__version__)
        return 0
    # longest matching command prefix wins
    best = None
    for words, target, _ in COMMANDS:
        if tuple(argv[: len(words)]) == words and (best is None or len(words) > len(best[0])):
            best = (words, target)
    if best is None:
        print(f"simtune: unknown command '{' '.join(argv[:2])}'\n\n{_usage()}", file=sys.stderr)
        return 2
    words, target = best
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    from simtune.config import ConfigError  # light import
    from simtune.io import DataError
    try:
        rc = fn(argv[len(words):])
    except (ConfigError, DataError) as e:
        print(f"simtune {' '.join(words)}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # a path that cannot be read or written: one line naming it. Anything else (and every
        # error with SIMTUNE_TRACEBACK=1) keeps its traceback.
        if e.filename is None or os.environ.get("SIMTUNE_TRACEBACK") == "1":
            raise
        print(f"simtune {' '.join(words)}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
