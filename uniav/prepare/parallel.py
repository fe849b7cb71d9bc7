"""The per-video process pool shared by ``uniav synthesize`` and ``uniav extract``."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Iterator


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _single_threaded_blas():
    """Context limiting BLAS/OpenMP to one thread in this process (threadpoolctl, installed
    with scikit-learn); a no-op without it."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (a dependency) brings it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def parallel_map(function: Callable[..., Any], argument_tuples: Iterable[tuple], *, jobs: int = 1,
                 desc: str = "", unit: str = "video", progress: bool = True) -> Iterator[Any]:
    """Call ``function(*args)`` for every tuple, in ``jobs`` processes, with a progress bar.

    Results come back in completion order.  With ``jobs > 1`` the work runs in fresh ("spawn")
    processes, so ``function`` must be a module-level function and its arguments picklable;
    the first exception cancels the pending calls and is re-raised.  Either way each call runs
    with one BLAS/OpenMP thread: the parallelism is across items, and the results do not depend
    on ``jobs`` (multi-threaded BLAS sums in another order, changing the last bits).

    Args:
        function: the per-item work.
        argument_tuples: positional arguments of each call.
        jobs: worker processes (1: in this process).
        desc: progress bar label.
        unit: progress bar unit.
        progress: show the bar (tqdm, on stderr).

    Yields:
        The return values.
    """
    from tqdm import tqdm

    items = list(argument_tuples)
    with tqdm(total=len(items), desc=desc, unit=unit, file=sys.stderr,
              disable=not progress or not items) as bar:
        if jobs <= 1 or len(items) <= 1:
            with _single_threaded_blas():
                for args in items:
                    result = function(*args)
                    bar.update(1)
                    yield result
            return
        import multiprocessing
        from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

        context = multiprocessing.get_context("spawn")
        # the workers are the parallelism: one BLAS/OpenMP thread each (read when they start)
        saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
        os.environ.update({name: "1" for name in _THREAD_VARIABLES})
        try:
            pool = ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=context)
            pending = {pool.submit(function, *args) for args in items}
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        with pool:
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        result = future.result()  # re-raises a worker's exception
                        bar.update(1)
                        yield result
            finally:
                for future in pending:
                    future.cancel()
