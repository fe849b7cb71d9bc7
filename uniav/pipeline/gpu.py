"""Give each concurrent local training job its own GPU.

``snakemake --resources gpu=N`` caps how many training jobs run at once, but Snakemake never
tells a job *which* GPU to use (snakemake/snakemake#281): without help every job lands on
``cuda:0``.  ``uniav gpu-slot -- COMMAND`` fixes that on one machine: it takes an exclusive
``flock`` on the first free per-GPU lock file(s) (``<lock dir>/<host>-gpu<i>.lock``; ``--count N``
for a job of N processes), sets ``CUDA_VISIBLE_DEVICES`` and ``exec``\\ s the command, which inherits the locked descriptor —
the lock is held exactly as long as the command runs and is released by the kernel when it
exits, however it exits (no stale locks after a kill).

It steps aside (runs the command unchanged) when a scheduler already chose the devices
(``CUDA_VISIBLE_DEVICES`` set, e.g. by SLURM) or when the machine has no NVIDIA GPU
(``nvidia-smi -L`` lists none).  When every GPU is taken it waits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

LOGGER = logging.getLogger(__name__)

#: Default directory of the lock files (inside Snakemake's state directory).
DEFAULT_LOCK_DIR = Path(".snakemake") / "uniav" / "gpu-locks"


def count_gpus() -> int:
    """Number of GPUs ``nvidia-smi -L`` lists (0 without the tool or on error)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30,
                                 check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def acquire_gpus(gpus: int, lock_dir: str | Path, count: int = 1, poll_seconds: float = 2.0,
                 timeout_seconds: float | None = None) -> list[tuple[int, int]]:
    """Lock ``count`` free GPUs (all of them or none: a job never waits holding some).

    Args:
        gpus: number of GPUs on this machine.
        lock_dir: directory of the lock files (created if needed).
        count: GPUs needed.
        poll_seconds: wait between rounds when too few are free.
        timeout_seconds: give up after this long (``None``: wait forever).

    Returns:
        ``[(gpu index, open file descriptor holding its lock), ...]``.

    Raises:
        ValueError: more GPUs asked than the machine has.
        TimeoutError: when ``timeout_seconds`` passed without enough free GPUs.
    """
    if count > gpus:
        raise ValueError(f"{count} GPUs asked, the machine has {gpus}")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname() or "localhost"
    started = time.monotonic()
    announced = False
    while True:
        held: list[tuple[int, int]] = []
        for index in range(gpus):
            fd = os.open(lock_dir / f"{host}-gpu{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            held.append((index, fd))
            if len(held) == count:
                return held
        for _, fd in held:  # not enough: release, wait, try again
            os.close(fd)
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"not {count} free GPU(s) among {gpus} after "
                               f"{timeout_seconds:.0f} s")
        if not announced:
            LOGGER.info("fewer than %d of %d GPUs are free; waiting", count, gpus)
            announced = True
        time.sleep(poll_seconds)


def exec_in_gpu_slot(command: list[str], lock_dir: str | Path = DEFAULT_LOCK_DIR,
                     gpus: int | None = None, count: int = 1) -> NoReturn:
    """Replace this process by ``command``, on GPUs of its own when that applies (module docs).

    Args:
        command: the program and its arguments.
        lock_dir: directory of the lock files.
        gpus: number of GPUs (default: :func:`count_gpus`).
        count: GPUs the command needs (a torchrun job: one per process); 0: none - the command
            sees no GPU (``CUDA_VISIBLE_DEVICES=""``), so it cannot take one a GPU job holds.
    """
    if not command:
        raise ValueError("no command given")
    env = dict(os.environ)
    if "CUDA_VISIBLE_DEVICES" in env:  # the scheduler chose
        pass
    elif count == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        available = count_gpus() if gpus is None else gpus
        if available > 0:
            held = acquire_gpus(available, lock_dir, count)
            for _, fd in held:
                os.set_inheritable(fd, True)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index, _ in held)
            LOGGER.info("running on GPU(s) %s of %d", env["CUDA_VISIBLE_DEVICES"], available)
    os.execvpe(command[0], command, env)
