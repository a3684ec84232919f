"""Work spread over the machine's cores: threads running numpy, which releases the GIL in its array
loops, so a pass or a writer that handles tensors one at a time uses every core without copying
tensors between processes.

* :func:`worker_count`: how many threads (the cores this process may run on; ``MMFC_WORKERS=N``
  overrides, ``1`` runs everything in the calling thread);
* :func:`map_in_order`: ``fn`` over ``items`` on those threads, results yielded in the items' order,
  with at most a bounded number computed ahead (so memory holds a few results, never all of them).

The first exception (in item order) propagates; work not yet started is cancelled.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

#: environment variable overriding :func:`worker_count`
WORKERS_ENV = "MMFC_WORKERS"

_T = TypeVar("_T")
_R = TypeVar("_R")


def worker_count() -> int:
    """Threads to use: ``$MMFC_WORKERS`` when set (at least 1), else the cores this process may run
    on."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_in_order(
    fn: Callable[[_T], _R], items: Iterable[_T], *, workers: int | None = None, ahead: int | None = None
) -> Iterator[_R]:
    """``fn(item)`` for each item, computed on ``workers`` threads (default :func:`worker_count`) and
    yielded in order; at most ``ahead`` results (default ``2 * workers``) exist at once, counting
    the one the caller holds. With one worker everything runs in the calling thread."""
    n = worker_count() if workers is None else max(1, workers)
    if n == 1:
        for item in items:
            yield fn(item)
        return
    window = max(1, ahead if ahead is not None else 2 * n)
    pending: deque[Future[_R]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mmfc") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


__all__ = ["WORKERS_ENV", "map_in_order", "worker_count"]
