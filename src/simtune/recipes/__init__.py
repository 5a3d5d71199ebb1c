"""Recipes: end-to-end jobs built on the generic simtune stages (social cascades, ...)."""
