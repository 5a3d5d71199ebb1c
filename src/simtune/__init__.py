"""simtune: train language models to simulate real users, and prove how well they do it."""
__version__ = "0.1.0"

__all__ = ["SFTConfig", "Trainer", "TrainingConfig", "__version__"]


def __getattr__(name: str):
    # lazy: `import simtune` must not import torch/transformers
    if name in ("SFTConfig", "Trainer", "TrainingConfig"):
        from simtune import api
        return getattr(api, name)
    raise AttributeError(f"module 'simtune' has no attribute {name!r}")
