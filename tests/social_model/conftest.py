import pytest


@pytest.fixture(scope="session")
def social_data(tmp_path_factory):
    """A small synthetic corpus run through build -> samples -> grpo (seconds)."""
    from simtune.recipes.social.pipeline import prepare
    return prepare(tmp_path_factory.mktemp("social"), users=60, posts=80, seed=1)
