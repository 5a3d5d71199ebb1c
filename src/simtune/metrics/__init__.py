"""Text metrics that need no model (BLEU, ROUGE, character similarity)."""
from simtune.metrics.text import (char_similarity, corpus_bleu, lcs_length, pearson, rouge_l, rouge_n,
                                  sentence_bleu, spearman, text_tokens)

__all__ = ["char_similarity", "corpus_bleu", "lcs_length", "pearson", "rouge_l", "rouge_n",
           "sentence_bleu", "spearman", "text_tokens"]
