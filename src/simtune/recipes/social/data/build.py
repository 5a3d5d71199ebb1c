"""Pass 1's driver, ``data social build``: every input through its reader into the one tree
builder, then trees, user index, rejects and summary written all or nothing."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from simtune.io import DataError, DateRange, RejectLog, require_input_file
from simtune.pseudonym import MentionScrubber, mention_summary
from simtune.recipes.social.data.ced import add_ced_cascade, ced_files, ced_lists_without_root, ced_shown
from simtune.recipes.social.data.diffusion import add_diffusion_file
from simtune.recipes.social.data.records import default_dates
from simtune.recipes.social.data.trees import TreeBuilder
from simtune.recipes.social.data.users import UserIndex, load_id_map, load_profiles, write_user_index
from simtune.recipes.social.data.weibo import WeiboParser, line_chunks, parse_lines
from simtune.recipes.social.schema import R_PARENT_MISSING


def _progress(enabled: bool, desc: str, total: int | None = None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="rec", unit_scale=True, disable=not enabled, mininterval=0.5,
                smoothing=0.1)


def build_trees(*, inputs: list[str], profiles: str | None, id_map: str | None, ced_dir: str | None,
                ced_limit: int | None, out_dir: str, window_seconds: int, strict: bool, tz_offset: int = 8 * 3600,
                embedded_profiles: bool = True, progress: bool = True, workers: int = 1,
                pseudonymizer=None, dates: DateRange | None = None, scrub_mentions: bool = False,
                diffusion: list[str] = ()) -> dict:
    """Pass 1. Writes ``trees.jsonl``, ``users.parquet``, ``activity.npz``, ``rejects.jsonl``
    and ``summary.json`` into ``out_dir`` atomically (all or nothing). ``pseudonymizer``
    (:class:`simtune.pseudonym.Pseudonymizer`): every user id and screen name goes through it
    as it is read, after the id map, so no output holds a raw one.

    ``workers > 1`` parses and checks chunks of the JSON-lines inputs in that many forked
    processes (which inherit the id map and pseudonymizer); this process records the
    results in line order, so every output is the same as with one worker."""
    import time as _time

    from simtune.io import atomic_path, atomic_write_json
    from simtune.parallel import few_gc_passes, imap_ordered

    t_start = _time.time()
    if not inputs and not ced_dir and not diffusion:
        raise DataError(None, None, "inputs", "nothing to read: give inputs (Weibo JSON lines), ced_dir and/or "
                                              "diffusion (who-joins cascade files)")
    for p in [*inputs, *diffusion]:
        require_input_file(p, "input file")
    out = Path(out_dir)
    with atomic_path(out, is_dir=True, command="data social build") as tmp:
        users = UserIndex()
        counts: Counter = Counter()
        with RejectLog(tmp / "rejects.jsonl", strict=strict) as rejects, open(tmp / "trees.jsonl", "wb") as fh:
            idm = load_id_map(id_map) if id_map else {}
            pz = pseudonymizer
            canon = None  # raw user id -> the id written: id map, then pseudonym
            if pz is not None:
                canon = lambda u: pz(idm.get(u, u))  # noqa: E731
            elif idm:
                canon = lambda u: idm.get(u, u)  # noqa: E731
            mentions = MentionScrubber() if scrub_mentions else None
            if profiles:
                load_profiles(profiles, users, rejects, counts, canon, pz, mentions)
            if mentions is not None:  # the profiles' counts, taken before any worker copies the scrubber
                counts.update(mentions.take_counts())
            b = TreeBuilder(fh, users, rejects, window_seconds, canon, pz, mentions)
            bar = _progress(progress, "build trees")
            dates = dates or default_dates()
            parser = WeiboParser(canon, tz_offset, window_seconds, embedded_profiles, pz, dates, mentions)
            chunks = (ch for path in inputs for ch in line_chunks(str(path)))
            with few_gc_passes():
                for path, posts, parse_counts, batch in imap_ordered(parse_lines, parser, chunks, workers):
                    b.c.update(parse_counts)
                    b.record_chunk(path, posts, batch)
                    bar.update(len(posts))
                if ced_dir:
                    for rf, lf in ced_files(ced_dir, ced_limit):
                        add_ced_cascade(b, rf, lf, tz_offset, dates)
                        bar.update(1)
                    for lf in ced_lists_without_root(ced_dir) if not ced_limit else ():
                        b.c["list_files_rejected"] += 1
                        shown = ced_shown(lf, canon, getattr(pz, "post", None))
                        rejects.reject(shown, None, f"{R_PARENT_MISSING}: no original-microblog "
                                               f"file for this repost list")
                for path in diffusion:
                    add_diffusion_file(b, Path(path), dates)
            bar.close()
            if mentions is not None:  # CED's (this process's); the workers' came with their counts
                b.c.update(mentions.take_counts())
            counts.update(b.c)
            rej_counts = dict(rejects.counts)
        index_info = write_user_index(users, b.root_times, tmp)
        summary = {
            "command": "data social build",
            "inputs": [str(p) for p in inputs], "profiles": profiles, "id_map": id_map, "ced_dir": ced_dir,
            "diffusion": [str(p) for p in diffusion],
            "window_seconds": window_seconds, "accepted_dates": str(dates),
            "pseudonymized": pz is not None, **({"salt_fingerprint": pz.fingerprint} if pz else {}),
            "mentions": mention_summary(scrub_mentions, counts),
            "counts": {k: counts.get(k, 0) for k in (
                "posts_in", "posts_out", "posts_rejected", "interactions_in", "interactions_out",
                "interactions_rejected", "interactions_rejected_with_post", "list_files_rejected", "profiles_in", "profiles_out",
                "profiles_rejected")},
            "dropped": {"after_window": b.dropped.get("after_window", 0)},
            "rejected_by_reason": rej_counts,
            **index_info,
            "outputs": ["trees.jsonl", "users.parquet", "activity.npz", "rejects.jsonl", "summary.json"],
            "seconds": round(_time.time() - t_start, 3),
        }
        if not (tmp / "rejects.jsonl").exists():
            (tmp / "rejects.jsonl").write_bytes(b"")
        atomic_write_json(tmp / "summary.json", summary)
    return summary
