import json
from pathlib import Path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_args(model_dir, tmp_path, train_file, *extra):
    return ["--model_name_or_path", str(model_dir), "--train_file", str(train_file),
            "--output_root", str(tmp_path / "out"), "--report_to", "none", "--max_length", "64",
            "--per_device_train_batch_size", "4", "--logging_steps", "1", "--seed", "0", *extra]
