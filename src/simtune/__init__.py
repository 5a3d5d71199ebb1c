"""simtune: train language models to simulate real users, and prove how well they do it."""
__version__ = "0.1.0"

__all__ = ["Trainer", "TrainingConfig", "__version__"]


def __getattr__(name: str):
    # lazy: `import simtune` must not import torch/transformers
    if name in ("Trainer", "TrainingConfig"):
        from simtune import api
        return getattr(api, name)
    raise AttributeError(f"module 'simtune' has no attribute {name!r}")
