"""Sub-commands of the engine: train, evaluate, cross-task, predict, import-checkpoint,
model-summary.

Heavy modules (torch, the model) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from uniav.argtypes import positive_int, probability
from uniav.config.cli import add_config_arguments, config_from_args
from uniav.errors import ConfigError

def _threads(args: argparse.Namespace) -> int | None:
    if args.threads:
        return args.threads
    value = os.environ.get("OMP_NUM_THREADS")
    return int(value) if value and value.isdigit() else None


def _run_name(args: argparse.Namespace, config: Any) -> str:
    """The run's name in tracking: the experiment, or ``<experiment>.seed<s>`` when ``--set
    seed=<s>`` differs from the configuration's own seed (:mod:`uniav.config.runs`)."""
    from uniav.config import run_name
    from uniav.config.cli import primary_seed

    return run_name(args.experiment, config.seed, primary_seed(args, config))


def _train(args: argparse.Namespace) -> int:
    from uniav.engine.distributed import shutdown
    from uniav.engine.trainer import Trainer
    from uniav.tracking import TrainingRun

    config = config_from_args(args)
    if args.init_from is not None:
        from uniav.fileio import refuse_output_over_input

        refuse_output_over_input(
            {"--output-dir (model.safetensors)": Path(args.output_dir) / "model.safetensors",
             "--work-dir (best.safetensors)": Path(args.work_dir) / "best.safetensors"},
            {"--init-from": args.init_from})
    rank = int(os.environ.get("RANK", "0"))
    # one MLflow run per experiment and seed, reopened by a resumed training
    # (uniav/tracking/runs.py)
    run = TrainingRun(config, args.experiment, work_dir=args.work_dir,
                      enabled=config.tracking.enabled and rank == 0 and not args.no_tracking,
                      run_name=_run_name(args, config))
    trainer = Trainer(config, args.experiment, output_dir=args.output_dir,
                      work_dir=args.work_dir, prompts_dir=args.prompts_dir, tracker=run,
                      threads=_threads(args), progress=not args.no_progress,
                      init_from=args.init_from)
    try:
        with run.open(trainer):
            result = trainer.fit()
            if result.finished and trainer.context.is_main:
                run.log_result(result)
    finally:
        shutdown(trainer.context)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from uniav.engine.inference import check_evaluate_paths, evaluate_experiment
    from uniav.engine.vocabulary import vocabulary_request
    from uniav.tracking import EvaluationRun

    config = config_from_args(args)
    experiment = config.experiment(args.experiment)
    vocabulary = vocabulary_request(args.classes, args.classes_file, args.class_embeddings)
    check_evaluate_paths(config, args.experiment, config_path=args.config,
                         weights=args.weights, predictions_dir=args.predictions_dir,
                         metrics_path=args.metrics,
                         other_inputs=vocabulary.inputs() if vocabulary else None)
    # into the training's run when the weights name it (uniav/tracking/runs.py)
    run = EvaluationRun(config, args.experiment, weights=args.weights, split=args.split,
                        enabled=config.tracking.enabled and not args.no_tracking,
                        run_name=_run_name(args, config))
    with run.open():
        summary = evaluate_experiment(config, args.experiment, weights=args.weights,
                                      predictions_dir=args.predictions_dir,
                                      metrics_path=args.metrics, split=args.split,
                                      threads=_threads(args), tracker=run,
                                      progress=not args.no_progress,
                                      allow_other_experiment=args.allow_other_experiment,
                                      tasks=args.tasks, vocabulary=vocabulary,
                                      prompts_dir=args.prompts_dir)
        run.log_result(summary, predictions_dir=args.predictions_dir)
    for task, metrics in summary["tasks"].items():
        groups = "".join(f", {name} {values['average_mAP']:.4f}"
                         for name, values in (metrics.get("class_groups") or {}).items()
                         if values["average_mAP"] is not None)
        print(f"{experiment.name} {task}: average mAP {metrics['average_mAP']:.4f}{groups}")
    return 0


def _cross_task(args: argparse.Namespace) -> int:
    from uniav.engine.cross_task import evaluate_cross_task

    config = config_from_args(args)
    summary = evaluate_cross_task(config, args.experiment, weights=args.weights,
                                  metrics_path=args.metrics, config_path=args.config,
                                  threads=_threads(args), progress=not args.no_progress)
    for key, pair in summary["pairs"].items():
        if pair.get("no_ground_truth"):
            print(f"{args.experiment} {pair['task']} videos, {pair['names_from']} names: no test "
                  f"instance of {', '.join(pair['classes'])}")
            continue
        print(f"{args.experiment} {pair['task']} videos, {pair['names_from']} names: average "
              f"mAP {pair['cross']['average_mAP']:.4f} (own names {pair['own']['average_mAP']:.4f})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from uniav.engine.predict import predict_video
    from uniav.engine.vocabulary import vocabulary_request

    vocabulary = vocabulary_request(args.classes, args.classes_file, args.class_embeddings)
    result = predict_video(args.video, args.weights, output_dir=args.output_dir,
                           tasks=args.tasks or None, min_score=args.min_score,
                           top_k=args.top_k, threads=_threads(args), vocabulary=vocabulary)
    print(json.dumps({"json": str(result["json"]), "figure": str(result["figure"]),
                      "detections": {t: len(d) for t, d in result["detections"].items()}}))
    return 0


def _import_checkpoint(args: argparse.Namespace) -> int:
    from uniav.engine.importer import import_released_checkpoint

    config = config_from_args(args)
    prompts = {}
    for item in args.prompts:
        task, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--prompts {item!r}: expected TASK=PATH")
        prompts[task] = Path(path)
    task_keys = None
    if args.task_keys:
        task_keys = {}
        for item in args.task_keys:
            key, sep, task = item.partition("=")
            if not sep:
                raise ConfigError(f"--task-key {item!r}: expected TASKn=name")
            task_keys[key] = task
    from uniav.fileio import refuse_output_over_input

    refuse_output_over_input({"--output": args.output},
                             {"checkpoint": args.checkpoint, "--config": args.config,
                              **{f"--prompts {task}": path for task, path in prompts.items()}})
    out = import_released_checkpoint(config, args.checkpoint, args.output, prompts=prompts,
                                     task_keys=task_keys, use_ema=not args.no_ema,
                                     n_head=args.n_head)
    print(f"wrote {out}")
    return 0


def _model_summary(args: argparse.Namespace) -> int:
    from uniav.config import load_config
    from uniav.model import ModelSpec, TaskHeadConfig, UniAV, count_parameters

    overrides = list(args.overrides) + (["benchmark=paper"] if args.preset == "paper" else [])
    config = load_config(args.config, overrides)
    model_cfg = config.model_config()
    tasks = {name: TaskHeadConfig(_class_count(config, name, args.num_classes),
                                  config.task_spec(name).max_seq_len,
                                  config.tasks[name].class_aware,
                                  config.tasks[name].label_smoothing,
                                  config.tasks[name].init_loss_norm)
             for name in config.task_names}
    dims = _input_dims(config, args)
    model = UniAV(ModelSpec(model=model_cfg, tasks=tasks, **dims))
    summary = {"preset": model_cfg.preset, "benchmark": config.benchmark, **count_parameters(model),
               "tasks": {t: {"classes": h.num_classes, "class_aware": h.class_aware,
                             "max_seq_len": h.max_seq_len} for t, h in tasks.items()},
               **dims, "embd_dim": model_cfg.embd_dim, "arch": list(model_cfg.arch)}
    print(json.dumps(summary, indent=2))
    return 0


def _class_count(config, task: str, fallback: int) -> int:
    """A task's classes: ``num_classes`` of its dataset record, else its annotation file's, else
    ``fallback``."""
    data = config.task_spec(task).data
    if data.num_classes is not None:
        return data.num_classes
    if Path(data.annotations).is_file():
        from uniav.data.annotations import load_annotations_under

        return len(load_annotations_under(data.annotations, config.data).classes)
    return fallback


def _input_dims(config, args: argparse.Namespace) -> dict[str, int]:
    """Feature and prompt widths: given, else the released ONE-PEACE width (paper benchmark),
    else the configured encoders' dims and the shipped sentence encoder's (384)."""
    if config.benchmark == "paper":
        width = config.datasets.paper.feature_dim
        visual = audio = width
        text = width if config.prompts.source == "npy" else 384
    else:
        from uniav.prepare.encoders import get_encoder

        features = config.features
        visual = get_encoder(features.visual_encoder, features, modality="visual").dim
        audio = get_encoder(features.audio_encoder, features, modality="audio").dim
        text = 384
    return {"visual_dim": args.input_dim or visual, "audio_dim": args.input_dim or audio,
            "text_dim": args.text_dim or text}


def _add_vocabulary_arguments(parser: argparse.ArgumentParser) -> None:
    """``--classes`` / ``--classes-file`` / ``--class-embeddings`` (uniav/engine/vocabulary.py)."""
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                       help="localize these classes instead of the trained ones (embedded with "
                            "the model's text encoder and each task's prompt template; labels "
                            "in the output are these names)")
    names.add_argument("--classes-file", default=None, metavar="FILE",
                       help="as --classes, one name per line (blank lines and # comments "
                            "skipped; a repeated name is an error)")
    parser.add_argument("--class-embeddings", default=None, metavar="NPY",
                        help="the names' text embeddings, one row per name (for a model whose "
                             "text encoder is not available here, e.g. ONE-PEACE prompts)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register the engine's sub-commands."""
    p = subparsers.add_parser("train", help="train one experiment (resumable; torchrun for DDP)")
    add_config_arguments(p)
    p.add_argument("--experiment", required=True, help="name under experiments: in params.yaml")
    p.add_argument("--output-dir", required=True, help="where model.safetensors and training.json go")
    p.add_argument("--work-dir", required=True, help="resumable checkpoints (kept on failure)")
    p.add_argument("--prompts-dir", default=None, help="directory of <task>.npy prompt embeddings")
    p.add_argument("--init-from", default=None, metavar="WEIGHTS",
                   help="start from these exported weights (model.safetensors of `uniav train` "
                        "or `uniav import-checkpoint`): same architecture; fresh optimizer, "
                        "schedule and EMA; the run's own prompts (docs/protocol.md)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser("evaluate", help="evaluate exported weights on a split")
    add_config_arguments(p)
    p.add_argument("--experiment", required=True)
    p.add_argument("--weights", required=True, help="model.safetensors written by `uniav train`")
    p.add_argument("--predictions-dir", required=True, help="writes <task>.json predictions")
    p.add_argument("--metrics", required=True, help="the metrics JSON to write")
    p.add_argument("--split", default="test", choices=["test", "validation"])
    p.add_argument("--allow-other-experiment", action="store_true",
                   help="evaluate weights that `uniav train` wrote for another experiment (the "
                        "metrics record the weights' own experiment and config hash)")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="evaluate only these tasks of the experiment (default: all)")
    _add_vocabulary_arguments(p)
    p.add_argument("--prompts-dir", default=None,
                   help="prompt embeddings of every class, for weights trained with held-out "
                        "classes (default: prompts.output_dir)")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tracking", action="store_true")
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("cross-task",
                              help="score each task's test videos with another task's names of "
                                   "the concepts they share (uniav/engine/cross_task.py)")
    add_config_arguments(p)
    p.add_argument("--experiment", required=True)
    p.add_argument("--weights", required=True, help="model.safetensors written by `uniav train`")
    p.add_argument("--metrics", required=True, help="the JSON file to write")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_cross_task)

    p = subparsers.add_parser("predict", help="localize actions, sound events and audio-visual "
                                              "events in your own video")
    p.add_argument("video", help="a video file (any container/codec FFmpeg reads)")
    p.add_argument("--weights", required=True, help="model.safetensors from `uniav train`")
    p.add_argument("--output-dir", default=None,
                   help="where <video file name>.uniav.json and .uniav.png go (x.mp4 -> "
                        "x.mp4.uniav.json; default: next to the video)")
    p.add_argument("--tasks", nargs="*", default=None, help="default: every task of the model")
    p.add_argument("--min-score", type=probability, default=0.2,
                   help="drop detections scoring below this, in [0, 1] (default: %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=20,
                   help="keep at most this many per task, >= 1 (default: %(default)s)")
    _add_vocabulary_arguments(p)
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(handler=_predict)

    p = subparsers.add_parser("import-checkpoint",
                              help="convert a checkpoint of the released implementation")
    add_config_arguments(p)
    p.add_argument("checkpoint", help="released .pth.tar (state_dict / state_dict_ema)")
    p.add_argument("--output", required=True, help="model.safetensors to write")
    p.add_argument("--prompts", nargs="+", default=[], metavar="TASK=NPY",
                   help="prompt embeddings per task (the released .npy files)")
    p.add_argument("--task-key", dest="task_keys", action="append", default=[],
                   metavar="TASKn=NAME", help="released task key mapping (default TASK1=tal, "
                                              "TASK2=avel, TASK3=sed)")
    p.add_argument("--n-head", type=positive_int, default=4, help="attention heads of the checkpoint")
    p.add_argument("--no-ema", action="store_true", help="take state_dict, not state_dict_ema")
    p.set_defaults(handler=_import_checkpoint)

    p = subparsers.add_parser("model-summary", help="print parameter counts as JSON")
    add_config_arguments(p)
    p.add_argument("--preset", default="paper", choices=["paper", "config"],
                   help="paper: the published model (the configuration with benchmark=paper); "
                        "config: the configuration as given")
    p.add_argument("--num-classes", type=positive_int, default=10,
                   help="classes of a task whose count neither the configuration "
                        "(num_classes) nor an annotation file gives")
    p.add_argument("--input-dim", type=positive_int, default=None,
                   help="feature width (default: the released or configured encoders')")
    p.add_argument("--text-dim", type=positive_int, default=None,
                   help="prompt-embedding width (default: 1536 for ONE-PEACE prompts, 384 for "
                        "the shipped sentence encoder)")
    p.set_defaults(handler=_model_summary)
