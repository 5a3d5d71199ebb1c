"""Social recipe: raw Weibo-style corpora -> interaction trees -> SFT samples and GRPO prompts.

Data side only. See docs/social_data.md for the schema of every output file.
"""
