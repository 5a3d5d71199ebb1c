"""Generic training data: JSONL, JSON (a list, or ``{"data": [...]}``), CSV, Parquet.

Record kinds and what each becomes for TRL:
- ``prompt_response`` (``prompt`` + ``response``, or ``completion``/``output``): a
  conversational prompt/completion pair, so the chat template is applied and the loss
  covers the response only;
- ``messages`` (a chat list ending with the assistant's turn): prompt = every turn but
  the last, completion = the last (earlier assistant turns are context, not targets);
- ``text``: raw text (continued pretraining, packed into blocks);
- ``preference`` (``prompt`` + ``chosen`` + ``rejected``): conversational pairs.
A malformed record raises :class:`~simtune.io.DataError` naming file, line and field, or,
with ``on_bad_record: skip``, goes to the rejects file and is counted.
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from simtune.io import DataError, RejectLog

RESPONSE_KEYS = ("response", "completion", "output")
KINDS = ("prompt_response", "messages", "text", "preference")
# lone surrogates: bytes that were not UTF-8 (as surrogateescape keeps them) or a "\ud800" JSON escape
_SURROGATE = re.compile("[\ud800-\udfff]")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """CSV rows as dicts keyed by the header, numbered by the line they start on. A row with
    bytes that are not UTF-8 or more fields than the header is yielded as a DataError."""
    csv.field_size_limit(2**31 - 1)  # a very long field is a long record, not a broken file
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                return
            prev = reader.line_num
            for row in reader:
                no, prev = prev + 1, reader.line_num  # a quoted field may span lines
                if not row:
                    continue
                if any(_SURROGATE.search(v) for v in row):
                    yield no, DataError(path, no, None, "bad encoding: the row is not valid UTF-8")
                elif len(row) > len(header):
                    yield no, DataError(path, no, None, f"bad row: {len(row)} fields, the header has {len(header)} "
                                                        f"(a stray comma or quote?)")
                else:
                    yield no, dict(zip(header, row + [None] * (len(header) - len(row))))
        except csv.Error as e:
            raise DataError(path, reader.line_num, None, f"bad csv: {e}") from None


def read_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_or_row_number, record)``; a record is whatever the file holds there.

    A JSONL line or CSV row that cannot be read (not JSON, not UTF-8, too many fields) is
    yielded as a :class:`DataError` instance, so the caller decides between stopping and
    rejecting; a file that cannot be read as a whole raises DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with open(path, "rb") as fh:
            for no, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield no, json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    yield no, DataError(path, no, None, "bad encoding: the line is not valid UTF-8")
                except json.JSONDecodeError as e:
                    yield no, DataError(path, no, None, f"bad json: {e.msg}")
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"bad json: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(path, None, None, f"bad encoding: not valid UTF-8 at byte {e.start}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(path, None, None, 'a .json file must hold a list of records or {"data": [...]}')
        for i, rec in enumerate(data, 1):  # "line" = 1-based record index for .json
            yield i, rec
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        row = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for rec in batch.to_pylist():
                    row += 1
                    yield row, rec
        except (pa.ArrowException, OSError) as e:
            raise DataError(path, None, None, f"not a readable Parquet file (after {row} rows): {e}") from None
    else:
        raise DataError(path, None, None, f"unsupported file type '{suffix}' (use .jsonl, .json, .csv or .parquet)")


def detect_kind(rec: dict) -> str | None:
    if "messages" in rec:
        return "messages"
    if "chosen" in rec and "rejected" in rec:
        return "preference"
    if "prompt" in rec and any(k in rec for k in RESPONSE_KEYS):
        return "prompt_response"
    if "text" in rec:
        return "text"
    return None


def _str_field(rec: dict, key: str, path, no) -> str:
    val = rec.get(key)
    if val is None:
        raise DataError(path, no, key, "missing field")
    if not isinstance(val, str):
        raise DataError(path, no, key, f"wrong type: expected a string, got {type(val).__name__}")
    if not val.strip():
        raise DataError(path, no, key, "empty string")
    if _SURROGATE.search(val):
        raise DataError(path, no, key, "bad encoding: a lone surrogate (not valid Unicode)")
    return val


def _fill(template: str | None, **values) -> str:
    if not template:
        return values[next(iter(values))]
    try:
        return template.format(**values)
    except (KeyError, IndexError) as e:
        raise DataError(None, None, None, f"template {template!r} uses an unknown placeholder {e}") from None


def convert_record(rec: Any, kind: str, path=None, no=None, prompt_template: str | None = None,
                   response_template: str | None = None) -> dict:
    """One raw record -> the TRL-ready dict for ``kind``. Raises DataError when malformed."""
    if not isinstance(rec, dict):
        raise DataError(path, no, None, f"wrong type: a record must be an object, got {type(rec).__name__}")
    if kind == "text":
        return {"text": _str_field(rec, "text", path, no)}
    if kind == "prompt_response":
        prompt = _str_field(rec, "prompt", path, no)
        rkey = next((k for k in RESPONSE_KEYS if k in rec), "response")
        response = _str_field(rec, rkey, path, no)
        prompt = _fill(prompt_template, prompt=prompt)
        response = _fill(response_template, response=response)
        return {"prompt": [{"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": response}]}
    if kind == "messages":
        msgs = rec.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise DataError(path, no, "messages", "wrong type: expected a non-empty list of {role, content}")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise DataError(path, no, f"messages[{i}]", "each message needs string 'role' and 'content'")
            if _SURROGATE.search(m["content"]):
                raise DataError(path, no, f"messages[{i}].content", "bad encoding: a lone surrogate (not valid Unicode)")
            if m["role"] not in ("system", "user", "assistant", "tool"):
                raise DataError(path, no, f"messages[{i}].role", f"unknown role: {m['role'][:40]!r}")
        if msgs[-1]["role"] != "assistant":
            raise DataError(path, no, "messages", "the last message must be the assistant's (the target)")
        clean = [{"role": m["role"], "content": m["content"]} for m in msgs]
        return {"prompt": clean[:-1], "completion": clean[-1:]}
    if kind == "preference":
        prompt = _fill(prompt_template, prompt=_str_field(rec, "prompt", path, no))
        chosen = _str_field(rec, "chosen", path, no)
        rejected = _str_field(rec, "rejected", path, no)
        return {"prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    raise ValueError(f"unknown record kind {kind!r}")


def load_records(path: str | os.PathLike, kind: str = "auto", *, rejects: RejectLog | None = None,
                 prompt_template: str | None = None, response_template: str | None = None,
                 max_samples: int | None = None) -> tuple[list[dict], str, dict]:
    """Read and convert every record of ``path``.

    Returns ``(records, kind, summary)`` where summary counts records read, kept and
    rejected by reason. Without a ``rejects`` log (or with a strict one) the first bad
    record raises :class:`DataError`.
    """
    from collections import Counter

    rejects = rejects if rejects is not None else RejectLog(strict=True)
    out: list[dict] = []
    n_in = 0
    resolved = None if kind == "auto" else kind
    before, before_counts = rejects.total, Counter(rejects.counts)
    for no, rec in read_records(path):
        n_in += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            if resolved is None:
                resolved = detect_kind(rec) if isinstance(rec, dict) else None
                if resolved is None:
                    raise DataError(path, no, None, "cannot tell the record kind: expected 'prompt'+'response', "
                                                    "'messages', 'text' or 'prompt'+'chosen'+'rejected'")
            out.append(convert_record(rec, resolved, path, no, prompt_template, response_template))
        except DataError as e:
            if e.path is None:
                e = DataError(path, no, e.field, e.reason)
            rejects.reject(e.path, e.line, e.reason, field=e.field)
        if max_samples and len(out) >= max_samples:
            break
    if not out:
        raise DataError(path, None, None, f"no usable records ({n_in} read, {rejects.total - before} rejected)")
    summary = {"file": str(path), "kind": resolved, "records_in": n_in, "records_out": len(out),
               "rejected": rejects.total - before, "rejected_by_reason": dict(rejects.counts - before_counts)}
    return out, resolved, summary


def kind_for_stage(stage: str, configured: str) -> str:
    if configured != "auto":
        return configured
    return {"cpt": "text", "reward": "preference", "dpo": "preference"}.get(stage, "auto")


def to_dataset(records: list[dict]):
    from datasets import Dataset
    return Dataset.from_list(records)


def json_default(o: Any) -> Any:
    return str(o)


def dump_jsonl(records, path) -> None:
    from simtune.io import atomic_path
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=json_default) + "\n")
