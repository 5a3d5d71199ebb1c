"""Review recipe: simulate a user's film reviews from their dated history.

ingest (JSON form, Douban CSV) -> samples (per-user chronological split, prompts)
-> SFT (simtune.stages) -> evaluate (BLEU/ROUGE on characters, length, sentiment vs
rating) beside baselines (most recent / most film-like earlier review) -> ablation.
"""
