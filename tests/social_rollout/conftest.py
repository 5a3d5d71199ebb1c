"""Fixtures for tree GRPO tests: a tiny synthetic corpus with samples down to depth 2,
and a scripted generator that returns real token ids for chosen answers."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """``samples/`` folder (train.parquet, val.parquet) of a small seeded corpus, depths 0..2."""
    from simtune.recipes.social.commands import (SocialBuildConfig, SocialSamplesConfig, SocialSynthConfig, run_build,
                                                 run_samples, run_synth)

    d = tmp_path_factory.mktemp("social_corpus")
    run_synth(SocialSynthConfig(out=str(d / "raw"), users=60, posts=80, seed=0))
    run_build(SocialBuildConfig(inputs=[str(d / "raw" / "posts.jsonl")], profiles=str(d / "raw" / "profiles.json"),
                                out=str(d / "build"), progress=False))
    run_samples(SocialSamplesConfig(build_dir=str(d / "build"), out=str(d / "samples"), max_depth=2,
                                    k_ranges=[[0.0, 1.0], [1.0, 2.0]], progress=False))
    return d / "samples"


class Scripted:
    """generator(prompts, n): completion j of a prompt is ``answer(prompt, j)``; token ids
    are real (chat-rendered prompt, tokenized answer + eos), so a policy update can use them.
    Records every call as (number of prompts, n)."""

    def __init__(self, tok, answer):
        from simtune.generation import render_prompt

        self.tok, self.answer, self.render = tok, answer, render_prompt
        self.calls: list[tuple[int, int]] = []

    def __call__(self, prompts, n):
        from simtune.recipes.social.model.rollout import Completion

        self.calls.append((len(prompts), n))
        out = []
        for p in prompts:
            pid = self.tok(self.render(self.tok, p), add_special_tokens=False)["input_ids"]
            group = []
            for j in range(n):
                text = self.answer(p, j)
                cid = self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
                group.append(Completion(text, pid, cid))
            out.append(group)
        return out


@pytest.fixture
def scripted():
    return Scripted
