"""Math recipe: GRPO on GSM8K with correctness and format rewards.

- :mod:`.data`: GSM8K lines -> GRPO prompts (``simtune data math prepare``)
- :mod:`.rewards`: ``math_correctness``, ``math_format``, ``math_combined``
- :mod:`.evaluate`: strict / lenient accuracy and format rate (``simtune eval math``)
- :mod:`.commands`: the CLI entry points, ``simtune train math``
"""
