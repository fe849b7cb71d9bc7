"""Memory benchmark: peak memory of a training process on a real-size replica of the paper data.

Writes (or, with ``--reuse-replica``, reuses) ``uniav paper-replica DIR --size real --layout
unpacked --feature-pool K``: the released video counts and lengths of ActivityNet 1.3 (20k
videos), DESED (1.9k clips) and UnAV-100 (10.8k videos), 1536-d float32 features - about 75 GB
as the training process sees them, a few GB on disk because each dataset has only K distinct
files per modality and length and the others are hard links.  Then, per configuration, one
fresh Python process (``--child``) builds the :class:`~uniav.engine.trainer.Trainer` of the
paper benchmark under the released protocol (``benchmark=paper``, ``protocol=released``: batch
16 per task, the released sampler, validation split = test split) with a small model
(``--model``, by default 32-d with one embedding convolution, one stem block and two head
layers: the paper model would take hours on a CPU; the point is the data) and runs ``--iterations`` training iterations (``Trainer.fit(stop_after_iterations)``),
optionally followed by one validation pass.  Measured per process:

* peak resident memory: ``ru_maxrss`` of the child from ``wait4`` (the kernel's high-water mark
  of its RSS), plus VmRSS / VmHWM / RssAnon / RssFile from ``/proc/self/status`` at phases and
  every 25 iterations;
* videos/s: ``LocalizationDataset.get`` calls per second spent in ``get`` (what the training
  loop is fed: cache lookups, reads, crops), and cache misses (``.npy`` files read from the
  page cache, validated, resized) per second spent reading;
* dataset construction time per task and split (``--construction``: it reads every ``.npy``
  header), with the memory the per-video records keep, and cold versus warm read rates (pages
  of the replica's files evicted with ``posix_fadvise(DONTNEED)``).

Configurations (``--only`` takes shell patterns of their names):

* ``<exp>-bounded-<pct>``: the shipped settings (``preload_features: false``, a 1024 MB LRU
  cache per dataset) on the first ``pct`` % of every subset (100, 50, 25 for the three-task
  ``uniav`` experiment; 100, 20, 10, 5 for ``single_avel``) - memory should stay flat;
* ``avel-preload-<pct>``: the old default of UnAV-100 (``preload_features: true``, cache
  effectively unbounded) at 5, 10, 20 % only, to show linear growth without exhausting the
  machine (the parent kills a child whose RSS passes ``--rss-limit-gb``);
* ``uniav-small-cache-100``: ``feature_cache_mb: 128``, to show the bound is the setting;
* ``uniav-bounded-100-validate``: the shipped settings and one validation pass of all three
  tasks after the iterations (the validation datasets fill their own caches).

Training runs with ``train.epochs`` and ``train.val_every_epochs`` set out of reach, so no
validation runs inside the iterations (an epoch of a 5 % subset is a few iterations).

Usage::

    .venv/bin/python benchmarks/memory.py [--work-dir work/memory-bench] [--reuse-replica]
        [--feature-pool 4] [--iterations 300] [--repeats 1] [--only 'avel-*']
        [--construction] [--output benchmarks/results/memory.json]

The table goes to stdout; the raw results (every measurement of every repeat) to ``--output``.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK_FOLDERS = {"tal": "activitynet13", "sed": "desed", "avel": "unav100"}
#: overrides common to every configuration (on top of params.yaml)
BASE_OVERRIDES = ["benchmark=paper", "protocol=released", "tracking.enabled=false",
                  # no end of schedule and no validation inside the measured iterations
                  "train.epochs=100000", "train.val_every_epochs=100000"]
#: the small model (the paper preset would take hours per configuration on 2 CPU cores; the
#: point is the data): 32-d, one embedding convolution, one stem block, two head layers
SMALL_MODEL = ["model.embd_dim=32", "model.head_dim=32", "model.arch=[1,1,5]",
               "model.head_num_layers=2"]
UNBOUNDED_MB = 10 ** 9  # "feature_cache_mb" that no dataset reaches (1 PB)
MB = 2 ** 20


def _configurations() -> list[dict]:
    configs = []
    for pct in (100, 50, 25):
        configs.append({"name": f"uniav-bounded-{pct}", "experiment": "uniav", "percent": pct,
                        "mode": "bounded"})
    configs.append({"name": "uniav-small-cache-100", "experiment": "uniav", "percent": 100,
                    "mode": "bounded", "cache_mb": 128})
    for pct in (100, 20, 10, 5):
        configs.append({"name": f"avel-bounded-{pct}", "experiment": "single_avel",
                        "percent": pct, "mode": "bounded"})
    for pct in (5, 10, 20):
        configs.append({"name": f"avel-preload-{pct}", "experiment": "single_avel",
                        "percent": pct, "mode": "preload"})
    configs.append({"name": "uniav-bounded-100-validate", "experiment": "uniav", "percent": 100,
                    "mode": "bounded", "validate": True})
    return configs


# --------------------------------------------------------------------------------------------
# /proc helpers (Linux)
# --------------------------------------------------------------------------------------------

def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process in MiB (empty when it is gone)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    fields[key] = int(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


# --------------------------------------------------------------------------------------------
# The replica and its fractions
# --------------------------------------------------------------------------------------------

def ensure_replica(replica: Path, pool: int, reuse: bool, seed: int) -> dict:
    """The replica's ``replica.json`` (written first unless reused)."""
    marker = replica / "replica.json"
    if reuse:
        if not marker.is_file():
            sys.exit(f"--reuse-replica: {marker} not found (run once without --reuse-replica)")
        info = json.loads(marker.read_text())
        wanted = {"size": "real", "layout": "unpacked", "feature_pool": pool}
        found = {key: info.get(key) for key in wanted}
        if found != wanted:
            sys.exit(f"--reuse-replica: {replica} is {found}, this benchmark needs {wanted}")
        print(f"reusing the replica {replica}", flush=True)
        return {**info, "write_seconds": None}
    command = [str(ROOT / ".venv/bin/uniav"), "paper-replica", str(replica), "--size", "real",
               "--layout", "unpacked", "--feature-pool", str(pool), "--seed", str(seed)]
    if replica.exists():
        command.append("--force")
    print("writing the replica:", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    info = json.loads(marker.read_text())
    return {**info, "write_seconds": round(time.perf_counter() - start, 1)}


def disk_usage(directory: Path) -> dict[str, float]:
    """Bytes on disk (each inode once) and as read (every hard link) of the ``.npy`` files."""
    seen, on_disk, logical, files = set(), 0, 0, 0
    for path in directory.rglob("*.npy"):
        stat = path.stat()
        files += 1
        logical += stat.st_size
        if stat.st_ino not in seen:
            seen.add(stat.st_ino)
            on_disk += stat.st_blocks * 512
    return {"files": files, "distinct_files": len(seen), "on_disk_gb": round(on_disk / 1e9, 2),
            "logical_gb": round(logical / 1e9, 2)}


def write_fraction(replica: Path, target: Path, percent: int) -> dict[str, str]:
    """Annotation files keeping the first ``percent`` % of every subset (file order) and the
    full class list; returns the overrides pointing the tasks at them."""
    from uniav.config import load_config
    from uniav.data.annotations import load_annotations_under

    config = load_config(ROOT / "params.yaml", ["benchmark=paper", "protocol=released",
                                               f"datasets.paper.root={replica}"])
    overrides = {}
    target.mkdir(parents=True, exist_ok=True)
    for task in TASK_FOLDERS:
        source = Path(config.datasets.paper.tasks[task].annotations)
        document = json.loads(source.read_text())
        classes = load_annotations_under(source, config.data).classes
        by_subset: dict[str, list[str]] = {}
        for video_id, entry in document["database"].items():
            by_subset.setdefault(entry["subset"], []).append(video_id)
        kept = set()
        for ids in by_subset.values():
            kept.update(ids[:math.ceil(len(ids) * percent / 100)])
        document["database"] = {k: v for k, v in document["database"].items() if k in kept}
        document["classes"] = classes
        path = target / f"{task}.json"
        path.write_text(json.dumps(document))
        overrides[task] = f"datasets.paper.tasks.{task}.annotations={path}"
    return overrides


def prompts_dir(replica: Path, target: Path) -> Path:
    """``<task>.npy`` prompt embeddings as ``uniav prompts`` leaves them (links to the replica's)."""
    target.mkdir(parents=True, exist_ok=True)
    for task, folder in TASK_FOLDERS.items():
        source = next((replica / folder).glob("*_prompt.npy"))
        link = target / f"{task}.npy"
        if not link.exists():
            link.symlink_to(source.resolve())
    return target


# --------------------------------------------------------------------------------------------
# One configuration in a child process
# --------------------------------------------------------------------------------------------

def run_child(spec: dict, limit_mb: float) -> dict:
    """Run one configuration in a fresh process; returns its result with ``ru_maxrss``."""
    with tempfile.TemporaryDirectory(prefix="uniav-memory-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec = {**spec, "tmp": tmp, "result": str(result_file)}
        spec_file.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]),
               "MKL_NUM_THREADS": str(spec["threads"]), "MLFLOW_DISABLE_TELEMETRY": "true"}
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, __file__, "--child", str(spec_file)], env=env)
        sampled, killed = 0.0, False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            rss = proc_status(process.pid).get("VmRSS", 0.0)
            sampled = max(sampled, rss)
            if rss > limit_mb and not killed:
                print(f"  RSS {rss:.0f} MiB > limit {limit_mb:.0f} MiB: killing the child",
                      flush=True)
                process.kill()
                killed = True
            time.sleep(0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        result.update({"exit_code": process.returncode, "killed_over_limit": killed,
                       "ru_maxrss_mb": usage.ru_maxrss / 1024, "sampled_max_rss_mb": sampled,
                       "process_wall_s": round(wall, 2)})
        return result


def _child_main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    result: dict = {"phases": {}}

    def snapshot(name: str) -> None:
        gc.collect()
        result["phases"][name] = proc_status()

    snapshot("start")
    import numpy as np
    import torch

    from uniav.config import load_config
    from uniav.data.dataset import LocalizationDataset
    from uniav.engine.trainer import Trainer
    snapshot("imported")

    counters = {"get_calls": 0, "get_s": 0.0, "load_calls": 0, "load_s": 0.0, "load_bytes": 0}
    constructed = []
    original_init, original_get = LocalizationDataset.__init__, LocalizationDataset.get
    original_load = LocalizationDataset._load

    def timed_init(self, spec_, split, **kwargs):
        before, start = proc_status()["VmRSS"], time.perf_counter()
        original_init(self, spec_, split, **kwargs)
        constructed.append({"task": spec_.name, "split": split, "videos": len(self),
                            "preload": kwargs.get("preload"), "seconds": time.perf_counter() - start,
                            "rss_delta_mb": proc_status()["VmRSS"] - before})

    def timed_get(self, index, rng=None):
        start = time.perf_counter()
        item = original_get(self, index, rng)
        counters["get_calls"] += 1
        counters["get_s"] += time.perf_counter() - start
        return item

    def timed_load(self, index):
        start = time.perf_counter()
        visual, audio = original_load(self, index)
        counters["load_calls"] += 1
        counters["load_s"] += time.perf_counter() - start
        counters["load_bytes"] += sum(t.numel() * t.element_size() for t in (visual, audio))
        return visual, audio

    LocalizationDataset.__init__ = timed_init
    LocalizationDataset.get = timed_get
    LocalizationDataset._load = timed_load

    overrides = list(spec["overrides"])
    config = load_config(ROOT / "params.yaml", overrides)
    start = time.perf_counter()
    trainer = Trainer(config, spec["experiment"], output_dir=Path(spec["tmp"]) / "out",
                      work_dir=Path(spec["tmp"]) / "work", prompts_dir=spec["prompts_dir"],
                      threads=spec["threads"], progress=False)
    result["init_s"] = time.perf_counter() - start
    result["datasets"] = constructed
    result["construction_reads"] = dict(counters)
    snapshot("trainer_built")
    for key in counters:
        counters[key] = 0

    trace, task_step = [], trainer._task_step
    every = max(1, spec["iterations"] // 12)

    def traced_task_step(task):
        if task == trainer.experiment.tasks[0] and trainer.iteration % every == 0:
            trace.append([trainer.iteration, round(proc_status()["VmRSS"], 1)])
        return task_step(task)

    trainer._task_step = traced_task_step
    start = time.perf_counter()
    done = trainer.fit(stop_after_iterations=spec["iterations"])
    result["train_s"] = time.perf_counter() - start
    result["iterations"] = done.iterations_done
    result["train_reads"] = dict(counters)
    result["trace"] = trace
    snapshot("trained")
    if spec.get("validate"):
        for key in counters:
            counters[key] = 0
        start = time.perf_counter()
        trainer.network.eval()
        metrics = trainer.validate(trainer.step.ema.module)
        result["validate_s"] = time.perf_counter() - start
        result["validation_reads"] = dict(counters)
        result["validation_mAP"] = {t: m["average_mAP"] for t, m in metrics.items()}
        snapshot("validated")
    result["caches"] = {
        f"{task}/{name}": {"videos": len(dataset), "cached_videos": len(dataset._cache),
                           "cached_mb": dataset._cached_bytes / MB,
                           "bound_mb": None if dataset._cache_bytes is None
                           else dataset._cache_bytes / MB}
        for task, data in trainer.data.items()
        for name, dataset in (("train", data.train), ("validation", data.validation))}
    result["torch"] = torch.__version__
    result["numpy"] = np.__version__
    Path(spec["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# Construction cost and cold / warm reads (one child process)
# --------------------------------------------------------------------------------------------

def _evict(paths) -> None:
    """Drop the page-cache pages of these files (only ours; needs no privileges)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _construction_main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    from uniav.config import load_config
    from uniav.data import dataset as dataset_module
    from uniav.data.features import MODALITIES
    from uniav.engine.training_data import open_dataset

    config = load_config(ROOT / "params.yaml", spec["overrides"])
    experiment = config.experiment("uniav")
    timers = {"matrix_infos": 0.0, "video_ids": 0.0}
    original_infos = dataset_module.matrix_infos
    original_ids = dataset_module.FeatureStore.video_ids

    def timed_infos(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original_infos(*args, **kwargs)
        finally:
            timers["matrix_infos"] += time.perf_counter() - start

    def timed_ids(self):
        start = time.perf_counter()
        try:
            return original_ids(self)
        finally:
            timers["video_ids"] += time.perf_counter() - start

    dataset_module.matrix_infos = timed_infos
    dataset_module.FeatureStore.video_ids = timed_ids
    rows, kept = [], []
    dims = (config.datasets.paper.feature_dim,) * 2
    for repeat in range(spec["repeats"]):
        for task in ("tal", "sed", "avel"):
            for split in ("train", "test"):
                for key in timers:
                    timers[key] = 0.0
                gc.collect()
                before, start = proc_status()["VmRSS"], time.perf_counter()
                dataset = open_dataset(config, experiment.specs[task], split, dims, "test")
                seconds = time.perf_counter() - start
                gc.collect()
                delta = proc_status()["VmRSS"] - before
                rows.append({"repeat": repeat, "task": task, "split": split,
                             "videos": len(dataset), "seconds": seconds,
                             "headers_s": timers["matrix_infos"], "listing_s": timers["video_ids"],
                             "rss_delta_mb": delta,
                             "kb_per_video": delta * 1024 / max(1, len(dataset))})
                print(f"  construct {task}/{split} (repeat {repeat + 1}): {len(dataset)} videos "
                      f"in {seconds:.2f} s, +{delta:.0f} MiB", flush=True)
                if repeat == 0:
                    kept.append(dataset)  # keep them: the RSS deltas add up
    # cold / warm reads: videos whose files share no inode with an earlier one
    reads = []
    for dataset in kept:
        if dataset.split != "train":
            continue
        chosen, inodes = [], set()
        for index, video_id in enumerate(dataset.video_ids):
            files = [dataset.store.file_of(video_id, m) for m in MODALITIES]
            ids = {f.stat().st_ino for f in files}
            if ids & inodes:
                continue
            inodes |= ids
            chosen.append((index, files))
            if len(chosen) == spec["read_videos"]:
                break
        _evict([f for _, files in chosen for f in files])
        row = {"task": dataset.spec.name, "videos": len(chosen)}
        for label in ("cold", "warm"):
            start, size = time.perf_counter(), 0
            for index, _ in chosen:
                visual, audio = dataset._load(index)
                size += visual.numel() * 4 + audio.numel() * 4
            seconds = time.perf_counter() - start
            row[f"{label}_videos_per_s"] = len(chosen) / seconds
            row[f"{label}_mb_per_s"] = size / MB / seconds
        reads.append(row)
        print(f"  reads {row['task']}: {row['videos']} distinct videos, cold "
              f"{row['cold_videos_per_s']:.0f}/s, warm {row['warm_videos_per_s']:.0f}/s",
              flush=True)
    Path(spec["result"]).write_text(json.dumps({"construction": rows, "reads": reads}))


def run_construction(overrides: list[str], repeats: int, read_videos: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="uniav-memory-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps({"overrides": overrides, "repeats": repeats,
                                         "read_videos": read_videos, "result": str(result_file)}))
        process = subprocess.Popen([sys.executable, __file__, "--construction-child",
                                    str(spec_file)])
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            sys.exit(f"construction child failed with exit code {process.returncode}")
        result = json.loads(result_file.read_text())
        result["ru_maxrss_mb"] = usage.ru_maxrss / 1024
        return result


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

def summarize(name: str, runs: list[dict]) -> dict:
    """min / median over repeats of the figures of one configuration."""
    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    def rate(run, phase, calls, seconds):
        reads = run.get(phase) or {}
        return reads[calls] / reads[seconds] if reads.get(seconds) else None

    return {
        "name": name, "repeats": len(runs),
        "peak_rss_mb": stats([r["ru_maxrss_mb"] for r in runs]),
        "rss_after_init_mb": stats([r.get("phases", {}).get("trainer_built", {}).get("VmRSS")
                                    for r in runs]),
        "init_s": stats([r.get("init_s") for r in runs]),
        "train_s": stats([r.get("train_s") for r in runs]),
        "items_per_s": stats([rate(r, "train_reads", "get_calls", "get_s") for r in runs]),
        "reads_per_s": stats([rate(r, "train_reads", "load_calls", "load_s") for r in runs]),
        "data_share": stats([r["train_reads"]["get_s"] / r["train_s"] for r in runs
                             if r.get("train_reads") and r.get("train_s")]),
        "misses": stats([(r.get("train_reads") or {}).get("load_calls") for r in runs]),
        "gets": stats([(r.get("train_reads") or {}).get("get_calls") for r in runs]),
    }


def print_table(summaries: list[dict], configs: dict[str, dict]) -> None:
    reference = {}
    for summary in summaries:
        config = configs[summary["name"]]
        if (config["mode"] == "bounded" and config["percent"] == 100 and not config.get("cache_mb")
                and not config.get("validate") and summary["peak_rss_mb"]):
            reference[config["experiment"]] = summary["peak_rss_mb"]["median"]
    header = (f"{'configuration':28} {'videos':>6} {'peak RSS MiB':>13} {'ratio':>6} "
              f"{'after init':>10} {'init s':>7} {'items/s':>8} {'reads/s':>8} {'data %':>7}")
    print(header)
    print("-" * len(header))
    for summary in summaries:
        config = configs[summary["name"]]
        peak = summary["peak_rss_mb"]
        ref = reference.get(config["experiment"])

        def med(key, fmt):
            value = summary[key]
            return format(value["median"], fmt) if value else "-"

        ratio = f"{peak['median'] / ref:.2f}" if peak and ref else "-"
        print(f"{summary['name']:28} {config['percent']:>5}% {med('peak_rss_mb', '.0f'):>13} "
              f"{ratio:>6} {med('rss_after_init_mb', '.0f'):>10} {med('init_s', '.1f'):>7} "
              f"{med('items_per_s', '.0f'):>8} {med('reads_per_s', '.0f'):>8} "
              f"{(format(100 * summary['data_share']['median'], '.0f') if summary['data_share'] else '-'):>7}")
    print("ratio: peak RSS / that of the same experiment's bounded default at 100 %; medians over "
          "repeats (min/median/max in the JSON); items/s: LocalizationDataset.get calls per "
          "second spent in get; reads/s: cache misses (files read and resized) per second spent "
          "reading; data %: share of the training wall time spent in get")


# --------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "memory-bench",
                        help="holds replica/, fractions/, prompts/ (default: %(default)s)")
    parser.add_argument("--reuse-replica", action="store_true",
                        help="use the replica already under --work-dir (checked: real, unpacked, "
                             "same --feature-pool)")
    parser.add_argument("--feature-pool", type=int, default=4, metavar="K",
                        help="distinct feature files per dataset, modality and length "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="replica seed (default: 0)")
    parser.add_argument("--iterations", type=int, default=300,
                        help="training iterations per configuration (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each configuration (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--model", nargs="*", default=SMALL_MODEL, metavar="KEY=VALUE",
                        help="model overrides (default: %(default)s; none: the paper model)")
    parser.add_argument("--only", nargs="+", metavar="PATTERN",
                        help="configurations to run (shell patterns); --list shows them")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    parser.add_argument("--construction", action="store_true",
                        help="also time dataset construction at real size and cold/warm reads")
    parser.add_argument("--construction-only", action="store_true",
                        help="only the construction / read measurements")
    parser.add_argument("--read-videos", type=int, default=200,
                        help="distinct videos per dataset for the cold/warm reads (default: 200)")
    parser.add_argument("--rss-limit-gb", type=float, default=16.0,
                        help="kill a child whose RSS passes this (default: %(default)s)")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "memory.json",
                        help="raw results JSON (default: %(default)s)")
    args = parser.parse_args()

    configs = {c["name"]: c for c in _configurations()}
    if args.list:
        for config in configs.values():
            print(config["name"], json.dumps(config))
        return
    selected = [name for name in configs
                if not args.only or any(fnmatch.fnmatch(name, p) for p in args.only)]
    if args.construction_only:
        selected = []
    if args.only and not selected and not args.construction_only:
        sys.exit(f"no configuration matches {args.only} (see --list)")

    replica = args.work_dir / "replica"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    replica_info = ensure_replica(replica, args.feature_pool, args.reuse_replica, args.seed)
    usage = disk_usage(replica)
    print(f"replica: {usage['files']} feature files, {usage['distinct_files']} distinct, "
          f"{usage['on_disk_gb']} GB on disk, {usage['logical_gb']} GB as read", flush=True)
    prompts = prompts_dir(replica, args.work_dir / "prompts")
    base = BASE_OVERRIDES + args.model + [f"datasets.paper.root={replica.resolve()}"]
    output = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "replica": {"directory": str(replica), "feature_pool": args.feature_pool,
                    "seed": args.seed, "write_seconds": replica_info.get("write_seconds"),
                    "counts": replica_info.get("counts"), **usage},
        "iterations": args.iterations, "threads": args.threads, "base_overrides": base,
        "configurations": {}, "summaries": []}

    if args.construction or args.construction_only:
        print("construction (every split the released protocol opens):", flush=True)
        output["construction"] = run_construction(base, max(1, args.repeats), args.read_videos)

    fractions = {}
    for name in selected:
        config = configs[name]
        pct = config["percent"]
        if pct not in fractions:
            fractions[pct] = ([] if pct == 100 else
                              list(write_fraction(replica, args.work_dir / "fractions" / str(pct),
                                                  pct).values()))
        overrides = base + fractions[pct]
        tasks = ("tal", "sed", "avel")
        if config["mode"] == "preload":
            overrides += [f"datasets.paper.tasks.{t}.preload_features=true" for t in tasks]
            overrides += [f"datasets.paper.tasks.{t}.feature_cache_mb={UNBOUNDED_MB}"
                          for t in tasks]
        if config.get("cache_mb"):
            overrides += [f"datasets.paper.tasks.{t}.feature_cache_mb={config['cache_mb']}"
                          for t in tasks]
        runs = []
        for repeat in range(args.repeats):
            print(f"{name} (repeat {repeat + 1}/{args.repeats}) ...", flush=True)
            spec = {"experiment": config["experiment"], "overrides": overrides,
                    "iterations": args.iterations, "threads": args.threads,
                    "prompts_dir": str(prompts), "validate": bool(config.get("validate"))}
            run = run_child(spec, args.rss_limit_gb * 1024)
            run["load_average_after"] = os.getloadavg()
            runs.append(run)
            status = "killed over the RSS limit" if run["killed_over_limit"] else (
                f"exit {run['exit_code']}")
            print(f"  {status}: peak RSS {run['ru_maxrss_mb']:.0f} MiB, "
                  f"{run.get('iterations', 0)} iterations in {run.get('train_s', 0):.0f} s",
                  flush=True)
            if run["exit_code"]:
                break
        output["configurations"][name] = {"config": config, "overrides": overrides,
                                          "runs": runs}
        output["summaries"].append(summarize(name, [r for r in runs if not r["exit_code"]]))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(output, indent=1))  # partial results survive a crash

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=1))
    if output["summaries"]:
        print()
        print_table(output["summaries"], configs)
    print(f"\nraw results: {args.output}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--construction-child":
        _construction_main(sys.argv[2])
    else:
        main()
