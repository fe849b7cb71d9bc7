"""Argument types with ranges for the ``uniav`` sub-commands (``type=`` of ``add_argument``).

A value out of range is an ``argparse`` error: exit status 2, the usage line and a message
naming the option (``argument --top-k: expected an integer >= 1, got '-1'``), before any file is
read.  ``nan``, ``inf`` and booleans are refused wherever a number is expected.  Standard
library only, so every ``cli`` module can import it at module level.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _integer(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer ``>= minimum``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


#: An integer >= 1 (counts, thread and worker numbers, sizes).
positive_int = int_at_least(1)
#: An integer >= 0 (seeds, retries).
non_negative_int = int_at_least(0)


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` refused)."""
    return _real(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (durations, timeouts)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A finite number in [0, 1] (scores)."""
    value = _real(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def tiou_threshold(text: str) -> float:
    """A tIoU threshold: a finite number in (0, 1]."""
    value = _real(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"tIoU thresholds must lie in (0, 1], got {text}")
    return value
