"""Detection-mAP benchmark: a synthetic evaluation the size of ActivityNet 1.3 validation.

4,926 videos with ~1.9 ground-truth instances each (one activity class per video, as in
ActivityNet), 200 classes, 100 predictions per video (about half of them near a ground-truth
instance, labelled mostly with the video's class), 10 tIoU thresholds 0.50:0.05:0.95; seeded.

Times :func:`uniav.evaluation.evaluate_detection` end to end on in-memory data - building the
validated :class:`~uniav.evaluation.Predictions` from the parsed results mapping included, JSON
file parsing excluded - best of ``--repeats`` runs, and prints the ratio to the 88 s the original
implementation (UniAV's ``ANETdetection``) took for this evaluation on the 2-core CI machine
(DESIGN section 11; target >= 50x, i.e. <= 1.76 s).  This in-memory time is the *in-memory numpy
reference*.

With ``--whole-process`` it also writes the benchmark as an ActivityNet ground-truth file and a
results file (52 MB) and times the whole ``uniav score`` process on them (a subprocess: interpreter
start-up, imports, reading and validating both files, the evaluation, writing the metrics; wall
time, best of ``--repeats``, and its CPU time), the plain ``json.load`` of the results file
(what the in-memory reference leaves out), and prints the ratios of the ``uniav score`` time to
the in-memory reference and to ``json.load`` + the in-memory reference, in wall time and in CPU
time (steadier on a shared machine).  The metrics it writes must match the in-memory result.

The last output line is one JSON object with keys ``seconds``, ``reference_seconds``,
``speedup`` (plus details; with ``--whole-process`` also ``score_process_seconds``,
``score_process_cpu_seconds``, ``json_load_seconds``, ``score_over_in_memory`` and
``score_over_json_load_and_in_memory``).  Usage::

    .venv/bin/python benchmarks/evaluation.py [--repeats 3] [--seed 0] [--whole-process]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from uniav.data.annotations import VideoAnnotation
from uniav.evaluation import ACTIVITYNET_THRESHOLDS, Predictions, evaluate_detection

REFERENCE_SECONDS = 88.0
NUM_VIDEOS = 4926
NUM_CLASSES = 200
PREDICTIONS_PER_VIDEO = 100


def synthetic_activitynet(seed: int) -> tuple[list[VideoAnnotation], dict[str, list[dict]]]:
    """Ground truth and an ActivityNet ``results`` mapping of the benchmark's shape."""
    rng = np.random.default_rng(seed)
    classes = [f"class_{k:03d}" for k in range(NUM_CLASSES)]
    videos, results = [], {}
    for v in range(NUM_VIDEOS):
        video_id = f"video_{v:05d}"
        duration = float(rng.uniform(30.0, 240.0))
        num_gt = int(min(1 + rng.poisson(0.9), 8))
        video_class = int(rng.integers(NUM_CLASSES))
        lengths = rng.uniform(0.05, 0.5, num_gt) * duration
        starts = rng.uniform(0, 1, num_gt) * (duration - lengths)
        gt_segments = np.stack([starts, starts + lengths], axis=1)
        videos.append(VideoAnnotation(video_id, "validation", duration, None, gt_segments,
                                      tuple(classes[video_class] for _ in range(num_gt))))
        # half of the predictions jitter a ground-truth instance, half are anywhere
        near = rng.random(PREDICTIONS_PER_VIDEO) < 0.5
        source = gt_segments[rng.integers(num_gt, size=PREDICTIONS_PER_VIDEO)]
        jitter = rng.normal(0, 0.15, (PREDICTIONS_PER_VIDEO, 2)) * (source[:, 1:] - source[:, :1])
        random_start = rng.uniform(0, duration * 0.9, PREDICTIONS_PER_VIDEO)
        random_length = rng.uniform(0.02, 0.6, PREDICTIONS_PER_VIDEO) * duration
        anywhere = np.stack([random_start, random_start + random_length], axis=1)
        segments = np.clip(np.where(near[:, None], source + jitter, anywhere), 0, duration)
        segments[:, 1] = np.maximum(segments[:, 1], segments[:, 0] + 0.1)
        labels = np.where(rng.random(PREDICTIONS_PER_VIDEO) < 0.7, video_class,
                          rng.integers(NUM_CLASSES, size=PREDICTIONS_PER_VIDEO))
        scores = rng.random(PREDICTIONS_PER_VIDEO)
        results[video_id] = [{"segment": [float(a), float(b)], "label": classes[k],
                              "score": float(s)}
                             for (a, b), k, s in zip(segments.tolist(), labels.tolist(),
                                                     scores.tolist())]
    return videos, results


def write_benchmark_files(directory: Path, videos: list[VideoAnnotation],
                          results: dict[str, list[dict]]) -> tuple[Path, Path]:
    """The benchmark as an ActivityNet ground-truth file and a results file in ``directory``."""
    database = {video.video_id: {
        "subset": video.subset, "duration": video.duration,
        "annotations": [{"segment": segment, "label": label}
                        for segment, label in zip(video.segments.tolist(), video.labels)]}
        for video in videos}
    ground_truth = directory / "ground_truth.json"
    ground_truth.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    predictions = directory / "results.json"
    predictions.write_text(json.dumps({"version": "VERSION 1.3", "results": results,
                                       "external_data": {"used": False}}))
    return ground_truth, predictions


def time_whole_process(ground_truth: Path, predictions: Path, output: Path, repeats: int
                       ) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each ``uniav score`` run (a subprocess, as a user runs it)."""
    uniav = Path(sys.executable).with_name("uniav")
    command = [str(uniav)] if uniav.exists() else [sys.executable, "-m", "uniav"]
    command += ["score", "--ground-truth", str(ground_truth), "--predictions", str(predictions),
                "--subset", "validation", "--tiou", *(f"{t:.2f}" for t in ACTIVITYNET_THRESHOLDS),
                "--output", str(output)]
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--whole-process", action="store_true",
                        help="also time the whole `uniav score` process on the benchmark written "
                             "to JSON files, against the in-memory reference")
    args = parser.parse_args()

    videos, results = synthetic_activitynet(args.seed)
    classes = sorted({label for video in videos for label in video.labels})
    times, cpu_times, result = [], [], None
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        predictions = Predictions.from_results(results)
        result = evaluate_detection(videos, predictions, thresholds=ACTIVITYNET_THRESHOLDS,
                                    classes=classes)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    best, best_cpu = min(times), min(cpu_times)
    print(f"{len(videos)} videos, {result.num_ground_truth} ground-truth instances, "
          f"{result.num_predictions} predictions, {len(result.per_class)} classes with ground "
          f"truth, {len(result.thresholds)} thresholds")
    print(f"average mAP {result.average_map:.6f}")
    print(f"runs: {', '.join(f'{t:.3f} s' for t in times)}; best {best:.3f} s "
          f"(CPU {best_cpu:.3f} s)")
    print(f"speed-up vs the original implementation ({REFERENCE_SECONDS:.0f} s): "
          f"{REFERENCE_SECONDS / best:.1f}x (target >= 50x)")
    summary = {"seconds": round(best, 4), "reference_seconds": REFERENCE_SECONDS,
               "speedup": round(REFERENCE_SECONDS / best, 1),
               "average_mAP": result.average_map, "runs": [round(t, 4) for t in times],
               "num_predictions": result.num_predictions}
    if args.whole_process:
        with tempfile.TemporaryDirectory(prefix="uniav-score-bench-") as tmp:
            ground_truth, results_file = write_benchmark_files(Path(tmp), videos, results)
            parse_times, parse_cpu = [], []
            for _ in range(args.repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                with open(results_file, encoding="utf-8") as handle:
                    json.load(handle)
                parse_times.append(time.perf_counter() - start)
                parse_cpu.append(time.process_time() - cpu_start)
            output = Path(tmp) / "metrics.json"
            walls, cpus = time_whole_process(ground_truth, results_file, output, args.repeats)
            metrics = json.loads(output.read_text())
            size = results_file.stat().st_size
        if metrics["per_class"] != {k: list(v) for k, v in result.per_class.items()}:
            raise SystemExit("uniav score and the in-memory evaluation disagree")
        score, parse, score_cpu = min(walls), min(parse_times), min(cpus)
        print(f"whole `uniav score` process: runs {', '.join(f'{t:.3f} s' for t in walls)}; "
              f"best {score:.3f} s (CPU {score_cpu:.3f} s); {size / 1e6:.0f} MB of results")
        print(f"json.load of the results file: best {parse:.3f} s (CPU {min(parse_cpu):.3f} s)")
        print(f"uniav score / in-memory reference: {score / best:.2f} "
              f"({score:.3f} s / {best:.3f} s; CPU {score_cpu / best_cpu:.2f}); "
              f"/ (json.load + in-memory reference): {score / (parse + best):.2f} "
              f"({score:.3f} s / {parse + best:.3f} s; "
              f"CPU {score_cpu / (min(parse_cpu) + best_cpu):.2f})")
        summary.update({"cpu_seconds": round(best_cpu, 4),
                        "score_process_seconds": round(score, 4),
                        "score_process_runs": [round(t, 4) for t in walls],
                        "score_process_cpu_seconds": round(score_cpu, 4),
                        "json_load_seconds": round(parse, 4),
                        "json_load_cpu_seconds": round(min(parse_cpu), 4),
                        "score_over_in_memory": round(score / best, 3),
                        "score_over_json_load_and_in_memory": round(score / (parse + best), 3),
                        "cpu_score_over_in_memory": round(score_cpu / best_cpu, 3),
                        "cpu_score_over_json_load_and_in_memory": round(
                            score_cpu / (min(parse_cpu) + best_cpu), 3)})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
