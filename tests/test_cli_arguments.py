"""Every numeric argument of every sub-command is range-checked by argparse (item 5 of the
reliability issue): exit status 2, the usage line and a message naming the option, before any
file is read (the paths given here do not exist)."""

from __future__ import annotations

import argparse

import pytest

from uniav.argtypes import non_negative_int, positive_float, positive_int, probability
from uniav.cli import build_parser, main

MISSING = "/nonexistent/uniav-test"
# sub-command prefix (with its required arguments), option, a bad value, a good value
NUMERIC = [
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--top-k", "-1", "5"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--top-k", "0", "1"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--top-k", "2.5", "3"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--min-score", "nan", "0"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--min-score", "1.5", "1"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--min-score", "-0.1", "0.3"),
    (["predict", f"{MISSING}/x.mp4", "--weights", f"{MISSING}/w"], "--threads", "0", "2"),
    (["train", "--config", f"{MISSING}/p.yaml", "--experiment", "uniav", "--output-dir", MISSING,
      "--work-dir", MISSING], "--threads", "-2", "1"),
    (["evaluate", "--config", f"{MISSING}/p.yaml", "--experiment", "uniav", "--weights", MISSING,
      "--predictions-dir", MISSING, "--metrics", MISSING], "--threads", "0", "4"),
    (["import-checkpoint", f"{MISSING}/c.pth", "--config", f"{MISSING}/p.yaml", "--output",
      MISSING], "--n-head", "0", "4"),
    (["model-summary", "--config", f"{MISSING}/p.yaml"], "--num-classes", "-3", "3"),
    (["model-summary", "--config", f"{MISSING}/p.yaml"], "--input-dim", "zero", "8"),
    (["synthesize", "--config", f"{MISSING}/p.yaml"], "--jobs", "0", "2"),
    (["extract", "--config", f"{MISSING}/p.yaml"], "--jobs", "-1", "2"),
    (["download", "--config", f"{MISSING}/p.yaml"], "--retries", "-1", "0"),
    (["download", "--config", f"{MISSING}/p.yaml"], "--timeout", "0", "0.5"),
    (["download", "--config", f"{MISSING}/p.yaml"], "--timeout", "inf", "30"),
    (["paper-replica", MISSING], "--seed", "-1", "0"),
    (["paper-replica", MISSING], "--feature-pool", "0", "2"),
    (["figures", "--config", f"{MISSING}/p.yaml"], "--videos", "0", "1"),
    (["gpu-slot", "--lock-dir", MISSING], "--gpus", "-1", "0"),  # 0: no GPU, left alone
    (["score", "--ground-truth", MISSING, "--predictions", MISSING, "--subset", "x", "--output",
      MISSING], "--tiou", "nan", "0.5"),
]


@pytest.mark.parametrize("prefix, option, bad, good", NUMERIC,
                         ids=[f"{p[0]} {o} {b}" for p, o, b, _ in NUMERIC])
def test_out_of_range_numbers_are_usage_errors(prefix, option, bad, good, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*prefix, option, bad])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"usage: uniav {prefix[0]}" in stderr
    assert f"argument {option}: " in stderr and bad in stderr
    assert "Traceback" not in stderr and MISSING not in stderr.split("error:")[-1]
    parsed = build_parser().parse_args([*prefix, option, good])  # the good value passes
    assert getattr(parsed, option.lstrip("-").replace("-", "_")) is not None


def test_every_numeric_option_has_a_range_checked_type():
    """No sub-command option is a bare int/float: new options must choose a checked type."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {action.option_strings}" for name, sub in subparsers.choices.items()
            for action in sub._actions if action.type in (int, float)]
    assert bare == []


@pytest.mark.parametrize("parse, text", [(positive_int, "1"), (non_negative_int, "0"),
                                         (positive_float, "1e-9"), (probability, "1.0")])
def test_boundaries_are_accepted(parse, text):
    assert parse(text) == float(text)


@pytest.mark.parametrize("parse, text", [(positive_int, "True"), (non_negative_int, "1e3"),
                                         (positive_float, "-inf"), (probability, "NaN")])
def test_non_numbers_are_refused(parse, text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_gpu_slot_lock_dir_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = main(["gpu-slot", "--lock-dir", str(blocker), "--gpus", "1", "--", "true"])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert stderr.startswith("uniav gpu-slot: error: ")  # the command's name, not its argument
    assert f"file {blocker}; field '--lock-dir'" in stderr


def test_download_root_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = main(["download", "--config", "params.yaml", "--set", "benchmark=paper",
                   "--root", str(blocker)])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {blocker}; field '--root': the benchmark root is not a directory" in stderr
