"""``uniav score``: detection mAP (and optional SED extras) of a results file.

::

    uniav score --ground-truth GT.json --predictions PRED.json --subset validation \\
        --tiou 0.5 0.55 0.6 0.65 0.7 0.75 0.8 0.85 0.9 0.95 --output metrics.json \\
        [--remove-duplicate-gt] [--sed-extras]

Bad input (malformed JSON, reversed or zero-length segments, NaN scores, an unknown subset, ...)
raises :class:`~uniav.errors.InputError`, which the ``uniav`` command turns into exit status 2
and a message naming the file, the video and the field.  The metrics JSON is written
atomically.  Only the standard library is imported at module level (numpy, pandas and
sed_scores_eval are imported when the command runs).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any

from uniav.argtypes import tiou_threshold


def score(args: argparse.Namespace) -> int:
    """Handler of ``uniav score``: evaluate, write the metrics JSON, print a summary.

    The cyclic garbage collector is paused meanwhile: reading a results file makes millions of
    short-lived objects without cycles, and collections would only cost time (5-7 % of the
    command on an ActivityNet-size file).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _score(args)
    finally:
        if collecting:
            gc.enable()


def _score(args: argparse.Namespace) -> int:
    from uniav.data.annotations import load_annotations
    from uniav.evaluation.detection import evaluate_detection
    from uniav.evaluation.results_file import load_predictions
    from uniav.fileio import atomic_write_json, refuse_output_over_input

    refuse_output_over_input({"--output": args.output},
                             {"--ground-truth": args.ground_truth,
                              "--predictions": args.predictions})
    database = load_annotations(args.ground_truth)
    videos = database.subset(args.subset)
    predictions = load_predictions(args.predictions)
    result = evaluate_detection(videos, predictions, thresholds=args.tiou,
                                classes=database.classes,
                                remove_duplicate_gt=args.remove_duplicate_gt)
    metrics: dict[str, Any] = {"ground_truth": str(args.ground_truth),
                               "predictions": str(args.predictions), "subset": args.subset}
    metrics.update(result.to_dict())
    if args.sed_extras:
        from uniav.evaluation.sed import sed_extras

        metrics["sed"] = sed_extras(videos, predictions, database.classes)
    atomic_write_json(args.output, metrics)
    _print_summary(metrics, args.output)
    return 0


def _print_summary(metrics: dict[str, Any], output: Path) -> None:
    per_threshold = ", ".join(f"{t:.2f}: {100 * v:.2f}"
                              for t, v in zip(metrics["thresholds"], metrics["mAP"]))
    print(f"subset {metrics['subset']}: {metrics['videos_evaluated']} videos, "
          f"{metrics['num_ground_truth']} ground-truth instances "
          f"({metrics['duplicates_removed']} duplicates removed), "
          f"{metrics['num_predictions']} predictions")
    print(f"average mAP {100 * metrics['average_mAP']:.2f} %  (mAP % at tIoU {per_threshold})")
    ignored = {reason: n for reason, n in metrics["ignored_predictions"].items() if n}
    if ignored:
        print(f"ignored predictions: {ignored}; unknown labels: {metrics['unknown_labels']}")
    outside = {what: n for what, n in metrics["outside_video"].items() if n}
    if outside:
        print(f"segments outside their video (clipped to it, or ignored when wholly outside): "
              f"{outside}")
    if metrics["prediction_videos_outside_gt"]:
        print(f"note: {metrics['prediction_videos_outside_gt']} videos with predictions are not "
              f"in subset {metrics['subset']!r}; their predictions count as false positives")
    if "sed" in metrics:
        sed = metrics["sed"]
        print(f"SED extras: PSDS1 {sed['psds1']:.4f}, PSDS2 {sed['psds2']:.4f}, collar F1 "
              f"macro {sed['collar_f1_macro']:.4f} / micro {sed['collar_f1_micro']:.4f}")
    print(f"wrote {output}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``score``."""
    parser = subparsers.add_parser(
        "score", help="detection mAP (ActivityNet protocol) of a results file",
        description="Score an ActivityNet-format results file against ground truth: mAP per "
                    "tIoU threshold, average mAP, per-class AP; optionally SED extras (PSDS1/2, "
                    "collar-based F1).")
    parser.add_argument("--ground-truth", required=True, type=Path, metavar="GT.json",
                        help="ActivityNet-style annotation JSON")
    parser.add_argument("--predictions", required=True, type=Path, metavar="PRED.json",
                        help='results JSON: {"results": {video: [{"segment", "label", '
                             '"score"}]}}')
    parser.add_argument("--subset", required=True,
                        help="the subset of the ground truth to evaluate (e.g. validation)")
    parser.add_argument("--tiou", required=True, nargs="+", type=tiou_threshold, metavar="T",
                        help="tIoU thresholds in (0, 1], e.g. 0.5 0.55 ... 0.95")
    parser.add_argument("--output", required=True, type=Path, metavar="OUT.json",
                        help="metrics JSON to write (atomically)")
    parser.add_argument("--remove-duplicate-gt", action="store_true",
                        help="drop repeated ground-truth instances (same label, bounds within "
                             "1 ms) before scoring; the count is reported")
    parser.add_argument("--sed-extras", action="store_true",
                        help="also compute PSDS1, PSDS2 and collar-based F1 (sound events)")
    parser.set_defaults(handler=score)
