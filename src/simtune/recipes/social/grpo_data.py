"""GRPO prompts from SFT samples: the prompt plus the ground truth the rewards need.

Reads the samples' Parquet files in record batches and keeps the columns GRPO needs
(``children`` and ``root_potential`` are computed by the samples pass, which has the
trees at hand); optionally filters depths.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

GRPO_COLUMNS = ["prompt", "true_users", "true_actions", "true_texts", "children", "root_potential",
                "subtree_size", "root_id", "node_id", "sample_id", "depth", "time", "split", "candidates"]


def write_grpo(samples_dir: Path, out_dir: Path, depths: Sequence[int] | None, counts: dict, progress: bool) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from simtune.recipes.social.sample_files import parquet_writer

    files = sorted(p for p in samples_dir.glob("*.parquet"))
    if not files:
        from simtune.io import DataError
        raise DataError(samples_dir, None, None, "no <split>.parquet files here (run `data social samples` first)")
    per_split = {}
    for f in files:
        pf = pq.ParquetFile(f)
        writer = parquet_writer(out_dir / f.name, pa.schema([pf.schema_arrow.field(c) for c in GRPO_COLUMNS]))
        n_out = 0
        bar = tqdm(total=pf.metadata.num_rows, desc=f"grpo {f.stem}", unit="rec", unit_scale=True,
                   disable=not progress)
        for batch in pf.iter_batches(batch_size=8192, columns=GRPO_COLUMNS):
            counts["samples_in"] += batch.num_rows
            bar.update(batch.num_rows)
            if depths is not None:
                mask = pc.is_in(batch.column("depth"), value_set=pa.array(list(depths), pa.int32()))
                kept = batch.filter(mask)
                counts["dropped_depth"] += batch.num_rows - kept.num_rows
                batch = kept
            if batch.num_rows:
                writer.write_table(pa.Table.from_batches([batch]))
                n_out += batch.num_rows
        bar.close()
        writer.close()
        per_split[f.stem] = n_out
        counts["rows_out"] += n_out
    return per_split
