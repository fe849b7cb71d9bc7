"""Termination signals as exceptions, so that a killed job closes its MLflow run.

SLURM (time limit, ``scancel``, preemption), Snakemake and ``kill`` stop a job with SIGTERM;
Python's default is to die on the spot, leaving the run RUNNING forever.  Inside
:func:`signals_raise` SIGTERM and SIGHUP raise :class:`SignalExit` instead (a ``SystemExit``
with status 128 + signal number), which unwinds through ``finally`` blocks: the run is closed as
KILLED and the process still exits with the status a signal death would give a shell.  SIGKILL
cannot be caught: such a run stays RUNNING until its training resumes (docs/pipeline.md).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

#: Signals turned into :class:`SignalExit` (SIGINT already raises KeyboardInterrupt).
HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class SignalExit(SystemExit):
    """Raised in the main thread when the process receives a handled signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"received {signal.Signals(self.signum).name}"


def _raise(signum: int, frame: object) -> None:
    raise SignalExit(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`SignalExit` (main thread only; elsewhere
    a no-op; an ignored signal stays ignored).  The previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in HANDLED
                if signal.getsignal(signum) is not signal.SIG_IGN}  # nohup: SIGHUP stays ignored
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def is_interruption(exc: BaseException | None) -> bool:
    """Whether ``exc`` stopped the process from outside (a signal, Ctrl-C) rather than failed."""
    return isinstance(exc, (SignalExit, KeyboardInterrupt))
