"""Ordered parallel map over forked worker processes, with bounded memory.

The data pipelines split their input into chunks, process the chunks independently and
record the results strictly in input order, so the output is the same for any number of
workers. :func:`imap_ordered` keeps at most ``ahead`` chunks in flight (a plain
``Pool.imap`` would let finished results pile up without limit when the consumer is the
slower side).
"""
from __future__ import annotations

import gc
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

_TASK: tuple[Callable, Any] | None = None  # (function, state): set before forking, inherited by the workers


def _run(item):
    fn, state = _TASK
    return fn(state, item)


def imap_ordered(fn: Callable[[Any, Any], Any], state: Any, items: Iterable, workers: int,
                 ahead: int | None = None) -> Iterator:
    """``fn(state, item)`` for each item, yielded in input order.

    ``workers <= 1``: in this process. Otherwise in ``workers`` forked processes that
    inherit ``state`` (read it, do not rely on changes to it: each worker has its own
    copy); at most ``ahead`` (default 2 x workers) items are submitted and not yet
    consumed. An exception in a worker is raised here; leaving the loop early stops the
    workers."""
    if workers <= 1:
        for it in items:
            yield fn(state, it)
        return
    import multiprocessing as mp

    global _TASK
    ahead = ahead or 2 * workers
    _TASK = (fn, state)
    pool = mp.get_context("fork").Pool(workers)
    try:
        pending: deque = deque()
        for it in items:
            pending.append(pool.apply_async(_run, (it,)))
            if len(pending) >= ahead:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()
        _TASK = None


@contextmanager
def few_gc_passes(threshold: int = 100_000) -> Iterator[None]:
    """Fewer cyclic-GC passes while a pipeline makes millions of short-lived acyclic
    objects (parsed JSON, rows): objects alive on entry are frozen out of the collector's
    scans and the youngest generation is collected every ``threshold`` allocations
    instead of 700. Reference counting still frees everything acyclic at once; the
    collector still runs, just less often. Restored on exit."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
