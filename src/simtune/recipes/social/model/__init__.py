"""The social recipe's model side: the candidate scorer and its training (who, who_train),
who is named given the scores (decision, prior), constrained answers (constrained), and
tree-shaped GRPO (rollout, tree_policy, tree_checkpoints)."""
