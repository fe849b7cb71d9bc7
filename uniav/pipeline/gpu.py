"""Give each concurrent local training job its own GPU.

``snakemake --resources gpu=N`` caps how many training jobs run at once, but Snakemake never
tells a job *which* GPU to use (snakemake/snakemake#281): without help every job lands on
``cuda:0``.  ``uniav gpu-slot -- COMMAND`` fixes that on one machine: it takes an exclusive
``flock`` on the first free per-GPU lock file (``<lock dir>/<host>-gpu<i>.lock``), sets
``CUDA_VISIBLE_DEVICES=<i>`` and ``exec``\\ s the command, which inherits the locked descriptor —
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


def acquire_gpu(gpus: int, lock_dir: str | Path, poll_seconds: float = 2.0,
                timeout_seconds: float | None = None) -> tuple[int, int]:
    """Lock the first free GPU.

    Args:
        gpus: number of GPUs on this machine.
        lock_dir: directory of the lock files (created if needed).
        poll_seconds: wait between rounds when all are taken.
        timeout_seconds: give up after this long (``None``: wait forever).

    Returns:
        ``(gpu index, open file descriptor holding the lock)``.

    Raises:
        TimeoutError: when ``timeout_seconds`` passed without a free GPU.
    """
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname() or "localhost"
    started = time.monotonic()
    announced = False
    while True:
        for index in range(gpus):
            fd = os.open(lock_dir / f"{host}-gpu{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return index, fd
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"no free GPU among {gpus} after {timeout_seconds:.0f} s")
        if not announced:
            LOGGER.info("all %d GPUs are taken; waiting for one", gpus)
            announced = True
        time.sleep(poll_seconds)


def exec_in_gpu_slot(command: list[str], lock_dir: str | Path = DEFAULT_LOCK_DIR,
                     gpus: int | None = None) -> NoReturn:
    """Replace this process by ``command``, on a GPU of its own when that applies (module docs).

    Args:
        command: the program and its arguments.
        lock_dir: directory of the lock files.
        gpus: number of GPUs (default: :func:`count_gpus`).
    """
    if not command:
        raise ValueError("no command given")
    env = dict(os.environ)
    if "CUDA_VISIBLE_DEVICES" not in env:
        available = count_gpus() if gpus is None else gpus
        if available > 0:
            index, fd = acquire_gpu(available, lock_dir)
            os.set_inheritable(fd, True)
            env["CUDA_VISIBLE_DEVICES"] = str(index)
            LOGGER.info("running on GPU %d of %d", index, available)
    os.execvpe(command[0], command, env)
