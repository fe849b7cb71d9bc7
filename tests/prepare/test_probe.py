"""Linear probe on the tiny benchmark: events are learnable, and AVEL needs both modalities."""

from __future__ import annotations

import numpy as np
import pytest

from uniav.data.annotations import VideoAnnotation
from uniav.grid import TimeGrid
from uniav.prepare.probe import AMBIGUOUS, format_table, plot_probe, run_probes, step_labels


def test_probe_step_labels_use_centre_times():
    video = VideoAnnotation(video_id="v", subset="training", duration=4.0, fps=16.0,
                            segments=np.array([[1.0, 2.0], [1.6, 3.0], [3.2, 3.4]]),
                            labels=("Dog", "Cat", "Dog"))
    # stride 4, window 16 at 16 fps: centres 0.5, 0.75, ..., 3.5 s
    labels = step_labels(video, ["Cat", "Dog"], 13, TimeGrid(fps=16, stride=4, window=16))
    background, cat, dog = 2, 0, 1
    # centre:  0.5 0.75 1.0 1.25 1.5 | 1.75 both | 2.0 .. 2.75 (Dog ends at 2.0) | 3.0 3.25 3.5
    expected = [background, background, dog, dog, dog, AMBIGUOUS, cat, cat, cat, cat,
                background, dog, background]
    assert labels.tolist() == expected


@pytest.fixture(scope="module")
def synth_probe_results(synth_benchmark):
    return run_probes(synth_benchmark)


def test_probe_every_task_is_learnable_well_above_chance(synth_probe_results):
    for task, result in synth_probe_results.items():
        chance = result["chance_balanced_accuracy"]
        assert result["test_steps"] > 100
        assert result["A+V"]["balanced_accuracy"] > max(0.75, 5 * chance), task
    # the task's own modality carries it; the other one is near chance
    tal, sed = synth_probe_results["tal"], synth_probe_results["sed"]
    assert tal["V"]["balanced_accuracy"] > 0.75 and tal["A"]["balanced_accuracy"] < 0.3
    assert sed["A"]["balanced_accuracy"] > 0.75 and sed["V"]["balanced_accuracy"] < 0.3


def test_probe_avel_needs_audio_and_visual(synth_probe_results):
    avel = synth_probe_results["avel"]
    both, audio_only, visual_only = avel["A+V"], avel["A"], avel["V"]
    for single in (audio_only, visual_only):
        assert both["macro_f1"] > single["macro_f1"] + 0.1
        assert both["hard_accuracy"] > single["hard_accuracy"] + 0.08
        assert both["accuracy"] > single["accuracy"] + 0.05
    # audio alone hears audible-only distractors as events
    assert both["distractor_rejection"] > audio_only["distractor_rejection"] + 0.3


def test_probe_table_and_figure(synth_probe_results, tmp_path):
    table = format_table(synth_probe_results)
    assert table.count("\n") == 4 and "| avel | 8 |" in table
    figure = tmp_path / "probe.png"
    plot_probe(synth_probe_results, figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
