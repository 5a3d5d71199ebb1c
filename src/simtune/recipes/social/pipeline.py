"""The data steps of the social recipe chained: raw corpus -> trees -> samples -> GRPO rows.

One function so the demo, the tests and users' scripts run the same chain the CLI runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simtune.recipes.social.commands import (SocialBuildConfig, SocialGRPOConfig, SocialSamplesConfig,
                                             SocialSynthConfig, run_build, run_grpo, run_samples, run_synth)


@dataclass
class SocialData:
    root: Path
    raw: Path
    build: Path
    samples: Path
    grpo: Path
    summaries: dict


def prepare(root: str | Path, *, synthetic: bool = True, users: int = 300, posts: int = 400, seed: int = 0,
            inputs: list[str] | None = None, profiles: str | None = None, ced_dir: str | None = None,
            ced_limit: int | None = None, diffusion: list[str] | None = None, window_days: float | None = None,
            max_depth: int = 1, test_share: float = 0.0, k_ranges: list | None = None, max_pool: int | None = None,
            noise_users: str | None = None) -> SocialData:
    root = Path(root)
    raw, build, samples, grpo = root / "raw", root / "build", root / "samples", root / "grpo"
    summaries = {}
    if synthetic:
        summaries["synth"] = run_synth(SocialSynthConfig.load(None, [], out=str(raw), users=users, posts=posts, seed=seed))
        inputs, profiles = [str(raw / "posts.jsonl")], str(raw / "profiles.json")
    bkw = {"window_days": window_days} if window_days is not None else {}
    summaries["build"] = run_build(SocialBuildConfig.load(None, [], inputs=list(inputs or []), profiles=profiles,
                                                          ced_dir=ced_dir, ced_limit=ced_limit,
                                                          diffusion=list(diffusion or []), out=str(build),
                                                          progress=False, **bkw))
    kw = {"k_ranges": k_ranges} if k_ranges else {}
    if max_pool:
        kw["max_pool"] = max_pool
    if noise_users:
        kw["noise_users"] = noise_users
    val_share = 0.15
    summaries["samples"] = run_samples(SocialSamplesConfig.load(None, [], build_dir=str(build), out=str(samples),
                                                                max_depth=max_depth, seed=seed, progress=False,
                                                                train_share=1 - val_share - test_share,
                                                                val_share=val_share, test_share=test_share, **kw))
    summaries["grpo"] = run_grpo(SocialGRPOConfig.load(None, [], samples_dir=str(samples), out=str(grpo), progress=False))
    return SocialData(root, raw, build, samples, grpo, summaries)
