import pytest
from stage_utils import write_jsonl


@pytest.fixture
def pr_file(tmp_path):
    """A small fixed prompt/response set the tiny model can fit in a few steps."""
    rows = [{"prompt": f"user {i} sees post about {t}", "response": f'[{{"user": "u{i}", "action": "comment", "text": "{t}!"}}]'}
            for i, t in enumerate(["猫", "football", "股票", "music"] * 4)]
    return write_jsonl(tmp_path / "train.jsonl", rows)
