"""`uniav gpu-slot`: concurrent jobs get distinct GPUs; it steps aside when it should."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

UNIAV = [sys.executable, "-m", "uniav"]
SHOW = ["--", sys.executable, "-c",
        "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')); time.sleep(1.0)"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(extra)
    return env


def test_concurrent_jobs_get_distinct_devices(tmp_path: Path) -> None:
    command = [*UNIAV, "gpu-slot", "--gpus", "2", "--lock-dir", str(tmp_path), *SHOW]
    jobs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_env())
            for _ in range(2)]
    outputs = sorted(job.communicate(timeout=60)[0].strip() for job in jobs)
    assert [job.returncode for job in jobs] == [0, 0]
    assert outputs == ["0", "1"]


def test_third_job_waits_for_a_free_device(tmp_path: Path) -> None:
    command = [*UNIAV, "gpu-slot", "--gpus", "1", "--lock-dir", str(tmp_path), *SHOW]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_env())
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_env())
    out = [p.communicate(timeout=60)[0].strip() for p in (first, second)]
    assert out == ["0", "0"]  # both ran on the only GPU, one after the other


def test_scheduler_choice_and_no_gpu_are_left_alone(tmp_path: Path) -> None:
    command = [*UNIAV, "gpu-slot", "--gpus", "2", "--lock-dir", str(tmp_path), *SHOW]
    preset = subprocess.run(command, capture_output=True, text=True,
                            env=_env(CUDA_VISIBLE_DEVICES="3"), timeout=60)
    assert preset.stdout.strip() == "3"
    none = subprocess.run([*UNIAV, "gpu-slot", "--gpus", "0", "--lock-dir", str(tmp_path), *SHOW],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert none.stdout.strip() == "unset"


def test_exit_status_is_the_commands(tmp_path: Path) -> None:
    result = subprocess.run([*UNIAV, "gpu-slot", "--gpus", "1", "--lock-dir", str(tmp_path), "--",
                             sys.executable, "-c", "raise SystemExit(7)"], env=_env(), timeout=60)
    assert result.returncode == 7


def test_a_multi_process_job_gets_all_its_devices_or_waits(tmp_path: Path) -> None:
    pair = [*UNIAV, "gpu-slot", "--gpus", "3", "--count", "2", "--lock-dir", str(tmp_path), *SHOW]
    single = [*UNIAV, "gpu-slot", "--gpus", "3", "--lock-dir", str(tmp_path), *SHOW]
    first = subprocess.Popen(pair, stdout=subprocess.PIPE, text=True, env=_env())
    second = subprocess.Popen(single, stdout=subprocess.PIPE, text=True, env=_env())
    third = subprocess.Popen(pair, stdout=subprocess.PIPE, text=True, env=_env())
    outputs = [p.communicate(timeout=60)[0].strip() for p in (first, second, third)]
    assert all(p.returncode == 0 for p in (first, second, third))
    # two GPUs for each pair job, never shared with a job running at the same time
    assert sorted(len(o.split(",")) for o in outputs) == [1, 2, 2]
    too_many = subprocess.run([*UNIAV, "gpu-slot", "--gpus", "1", "--count", "2", "--lock-dir",
                               str(tmp_path), *SHOW], capture_output=True, text=True, env=_env(),
                              timeout=60)
    assert too_many.returncode != 0 and "2 GPUs asked, the machine has 1" in too_many.stderr


def test_a_job_asking_for_no_gpu_sees_none_and_holds_none(tmp_path: Path) -> None:
    """``--count 0`` (a CPU job, e.g. ``--set-resources train:gpu=0`` on a cluster) runs at once,
    hides the GPUs from the command and leaves every GPU to the jobs that asked for one."""
    holder = subprocess.Popen([*UNIAV, "gpu-slot", "--gpus", "1", "--lock-dir", str(tmp_path),
                               "--", sys.executable, "-c", "import time; time.sleep(20)"],
                              env=_env())
    try:
        time.sleep(3.0)  # the holder has its lock by now
        started = time.perf_counter()
        cpu_job = subprocess.run([*UNIAV, "gpu-slot", "--gpus", "1", "--count", "0",
                                  "--lock-dir", str(tmp_path), *SHOW],
                                 capture_output=True, text=True, env=_env(), timeout=60)
        waited = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert cpu_job.returncode == 0, cpu_job.stderr
    assert cpu_job.stdout.strip() == ""  # CUDA_VISIBLE_DEVICES set, to no device
    assert waited < 15.0  # it did not wait for the held GPU
