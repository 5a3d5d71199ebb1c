"""simtune: train language models to simulate real users, and prove how well they do it."""
__version__ = "0.1.0"
