"""Bad input (docs/reliability.md): each case
raises an InputError naming the file, the video and the field."""

from __future__ import annotations

import dataclasses
import json

from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.data._dataset_fixtures import DIMS, assert_names, build, duration_for, video
from uniav.data.annotations import load_annotations
from uniav.data.dataset import LocalizationDataset
from uniav.data.features import FeatureLayout, FeatureStore
from uniav.errors import InputError

STEPS = 12


def _videos(count: int = 2) -> dict[str, dict]:
    return {f"v{i}": video("training", STEPS, [(0.5, 1.5, "Dog")]) for i in range(count)}


def _npy_case(tmp_path, **kwargs):
    """A two-video npy dataset; returns (spec, feature directory)."""
    spec, _ = build(tmp_path, _videos(), **kwargs)
    return spec, tmp_path / "features"


def _construct(spec, **kwargs) -> LocalizationDataset:
    return LocalizationDataset(spec, "train", seed=0, **kwargs)


# ---- features: files ----------------------------------------------------------------------------

def test_feature_file_missing_npy(tmp_path):
    spec, store = _npy_case(tmp_path)
    (store / "v1_audio.npy").unlink()
    with pytest.raises(InputError) as excinfo:
        FeatureStore(store).read("v1")
    assert_names(excinfo, file=store / "v1_audio.npy", video="v1", field="audio")


def test_missing_features_are_listed_at_dataset_construction(tmp_path):
    videos = {f"vid{i}": video("training", STEPS) for i in range(9)}
    spec, _ = build(tmp_path, videos)
    store = tmp_path / "features"
    for i in (1, 2, 4, 5, 6, 8):
        (store / f"vid{i}_visual.npy").unlink()
    (store / "vid3_audio.npy").unlink()
    with pytest.raises(InputError) as excinfo:
        _construct(spec)
    error = assert_names(excinfo, file=store, field="features")
    message = str(error)
    assert "7 of 9 videos of split 'train'" in message and "'training'" in message
    assert all(f"'vid{i}'" in message for i in (1, 2, 3, 4, 5))  # the first few ...
    assert "'vid6'" not in message and "and 2 more" in message   # ... and a count


def test_all_features_missing_hints_at_the_id_prefix(tmp_path):
    spec, _ = build(tmp_path, _videos())
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, id_prefix="v_"))
    with pytest.raises(InputError, match="check id_prefix 'v_'.*'v0_audio.npy', 'v0_visual.npy'"):
        _construct(spec)


def test_missing_hdf5_video_is_listed(tmp_path):
    spec, features = build(tmp_path, _videos(3), feature_format="hdf5")
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        del handle["v2"]
    with pytest.raises(InputError, match="'v2'") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "features.h5", video="v2", field="features")


def test_missing_hdf5_dataset(tmp_path):
    spec, _ = build(tmp_path, _videos(), feature_format="hdf5")
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        del handle["v1/audio"]
    with pytest.raises(InputError, match="no such dataset") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "features.h5", video="v1", field="audio")
    with pytest.raises(InputError, match="no such dataset") as excinfo:
        FeatureStore(tmp_path / "features.h5", FeatureLayout(format="hdf5")).read("v1")
    assert_names(excinfo, file=tmp_path / "features.h5", video="v1", field="audio")


def test_hdf5_modality_that_is_a_group_not_a_dataset(tmp_path):
    spec, _ = build(tmp_path, _videos(), feature_format="hdf5")
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        del handle["v0/visual"]
        handle.create_group("v0/visual")
    for read in (lambda: _construct(spec),
                 lambda: FeatureStore(tmp_path / "features.h5",
                                      FeatureLayout(format="hdf5")).read("v0")):
        with pytest.raises(InputError, match="no such dataset") as excinfo:
            read()
        assert_names(excinfo, file=tmp_path / "features.h5", video="v0", field="visual")


def test_hdf5_metadata_that_is_not_json(tmp_path):
    spec, _ = build(tmp_path, _videos(), feature_format="hdf5")
    with h5py.File(tmp_path / "features.h5", "a") as handle:
        handle.attrs["meta"] = "{not json"
    with pytest.raises(InputError, match="not valid JSON") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "features.h5", field="meta")


def test_truncated_npy(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_visual.npy"
    file.write_bytes(file.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="visual")
    with pytest.raises(InputError, match="not fully written") as excinfo:  # numpy's own message
        FeatureStore(store).read("v0")
    assert_names(excinfo, file=file, video="v0", field="visual")


def test_npy_truncated_inside_its_header(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v1_audio.npy"
    file.write_bytes(file.read_bytes()[:30])
    with pytest.raises(InputError, match="header") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v1", field="audio")


def test_empty_npy(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v1_visual.npy"
    file.write_bytes(b"")
    with pytest.raises(InputError, match="unreadable") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v1", field="visual")
    with pytest.raises(InputError, match="No data left") as excinfo:
        FeatureStore(store).read("v1")
    assert_names(excinfo, file=file, video="v1", field="visual")


def test_truncated_hdf5_file(tmp_path):
    spec, _ = build(tmp_path, _videos(), feature_format="hdf5")
    file = tmp_path / "features.h5"
    file.write_bytes(file.read_bytes()[:-200])
    with pytest.raises(InputError, match="HDF5") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file)


def test_object_array_is_refused(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_audio.npy"
    np.save(file, np.array([{"evil": 1}] * STEPS, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickled") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="audio")
    with pytest.raises(InputError, match="Object arrays cannot be loaded") as excinfo:
        FeatureStore(store).read("v0")
    assert_names(excinfo, file=file, video="v0", field="audio")


def test_npz_archive_under_an_npy_name_is_refused(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_visual.npy"
    with open(file, "wb") as handle:
        np.savez(handle, visual=np.zeros((STEPS, DIMS[0]), np.float32))
    with pytest.raises(InputError) as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="visual")
    with pytest.raises(InputError, match="npz") as excinfo:
        FeatureStore(store).read("v0")
    assert_names(excinfo, file=file, video="v0", field="visual")


# ---- features: values and shapes ----------------------------------------------------------------

@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_features(tmp_path, bad_value):
    spec, store = _npy_case(tmp_path)
    file = store / "v1_audio.npy"
    values = np.load(file)
    values[3, 1] = values[7, 0] = bad_value
    np.save(file, values)
    with pytest.raises(InputError, match="2 non-finite values") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v1", field="audio")
    lazy = _construct(spec, preload=False)  # without preloading: when the item is read
    with pytest.raises(InputError, match="non-finite") as excinfo:
        lazy.get(1)
    assert_names(excinfo, file=file, video="v1", field="audio")


def test_wrong_rank(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_visual.npy"
    np.save(file, np.zeros((STEPS, DIMS[0], 2), np.float32))
    with pytest.raises(InputError, match="T x C matrix") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="visual")


def test_non_numeric_dtype(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_visual.npy"
    np.save(file, np.full((STEPS, DIMS[0]), "x"))
    with pytest.raises(InputError, match="numeric") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="visual")


def test_wrong_dims(tmp_path):
    spec, store = _npy_case(tmp_path)  # the store's metadata says DIMS
    file = store / "v1_visual.npy"
    np.save(file, np.zeros((STEPS, DIMS[0] + 1), np.float32))
    with pytest.raises(InputError, match=f"expected {DIMS[0]} channels") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v1", field="visual")


def test_swapped_axes(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_audio.npy"
    np.save(file, np.zeros((DIMS[1], STEPS), np.float32))  # C x T on disk
    with pytest.raises(InputError, match="axes look swapped") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="audio")


def test_swapped_axes_without_known_dims_are_caught_by_the_length_check(tmp_path):
    # every file C x T and no metadata: the "steps" (= channels) contradict the duration
    videos = {"v0": video("training", 40)}
    features = {"v0": (np.zeros((DIMS[0], 40), np.float32), np.zeros((DIMS[1], 40), np.float32))}
    spec, _ = build(tmp_path, videos, features=features, meta=False)
    with pytest.raises(InputError, match="axes swapped") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "features" / "v0_visual.npy", video="v0",
                 field="visual")


def test_audio_visual_length_mismatch_beyond_tolerance(tmp_path):
    spec, store = _npy_case(tmp_path, length_tolerance=2)
    file = store / "v1_audio.npy"
    np.save(file, np.zeros((STEPS - 3, DIMS[1]), np.float32))
    with pytest.raises(InputError, match="difference 3 > tolerance 2") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v1", field="audio")


def test_audio_visual_length_mismatch_within_tolerance_is_truncated(tmp_path):
    spec, store = _npy_case(tmp_path, length_tolerance=2)
    np.save(store / "v1_audio.npy", np.ones((STEPS - 2, DIMS[1]), np.float32))
    for preload in (True, False):
        item = _construct(spec, preload=preload).get(1)
        assert item.visual.shape == (DIMS[0], STEPS - 2)
        assert item.audio.shape == (DIMS[1], STEPS - 2)


def test_empty_sequence(tmp_path):
    spec, store = _npy_case(tmp_path)
    file = store / "v0_visual.npy"
    np.save(file, np.zeros((0, DIMS[0]), np.float32))
    np.save(store / "v0_audio.npy", np.zeros((0, DIMS[1]), np.float32))
    with pytest.raises(InputError, match=r"T = 0") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=file, video="v0", field="visual")


def test_length_far_from_the_duration(tmp_path):
    # a 12-step duration allows |T - 12| <= 0.25 * 12 + 4 = 7 steps
    videos = {"ok": video("training", 19, duration=duration_for(12)),
              "bad": video("training", 20, duration=duration_for(12))}
    spec, _ = build(tmp_path, videos)
    with pytest.raises(InputError, match="20 feature steps") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "features" / "bad_visual.npy", video="bad",
                 field="visual")


# ---- annotations --------------------------------------------------------------------------------

def _annotation_file(tmp_path, data) -> Path:
    path = tmp_path / "annotations.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _one_video(annotations, duration=10.0, **entry) -> dict:
    return {"classes": ["Dog", "Speech"],
            "database": {"clip": {"subset": "training", "duration": duration,
                                  "annotations": annotations, **entry}}}


def _reject(tmp_path, data, match: str, *, video: str | None = "clip", field: str | None = None):
    path = _annotation_file(tmp_path, data)
    with pytest.raises(InputError, match=match) as excinfo:
        load_annotations(path)
    assert_names(excinfo, file=path, video=video, field=field)


def test_unknown_label(tmp_path):
    _reject(tmp_path, _one_video([{"segment": [1, 2], "label": "Dgo"}]), "unknown label 'Dgo'",
            field="annotations[0].label")


def test_reversed_segment(tmp_path):
    _reject(tmp_path, _one_video([{"segment": [1, 2], "label": "Dog"},
                                  {"segment": [3, 2.5], "label": "Dog"}]),
            "reversed", field="annotations[1].segment")


def test_zero_length_segment(tmp_path):
    _reject(tmp_path, _one_video([{"segment": [2, 2], "label": "Dog"}]), "zero-length",
            field="annotations[0].segment")


def test_segment_starting_beyond_the_duration(tmp_path):
    _reject(tmp_path, _one_video([{"segment": [10.5, 10.8], "label": "Dog"}]), "outside",
            field="annotations[0].segment")


def test_segment_ending_far_beyond_the_duration(tmp_path):
    _reject(tmp_path, _one_video([{"segment": [8, 14], "label": "Dog"}]), "outside",
            field="annotations[0].segment")


def test_segment_wholly_before_zero_within_the_tolerance(tmp_path):
    # clamping [-0.5, -0.2] to the video would give the reversed [0, -0.2]
    _reject(tmp_path, _one_video([{"segment": [-0.5, -0.2], "label": "Dog"}]), "outside",
            field="annotations[0].segment")


def test_slight_overhang_is_clamped(tmp_path):
    path = _annotation_file(tmp_path, _one_video([{"segment": [-0.3, 2], "label": "Dog"},
                                                  {"segment": [8, 10.4], "label": "Speech"}]))
    assert load_annotations(path).videos["clip"].segments.tolist() == [[0.0, 2.0], [8.0, 10.0]]


@pytest.mark.parametrize("missing", ["subset", "duration"])
def test_missing_video_field(tmp_path, missing):
    data = _one_video([{"segment": [1, 2], "label": "Dog"}])
    del data["database"]["clip"][missing]
    _reject(tmp_path, data, f"missing '{missing}'", field=missing)


@pytest.mark.parametrize("missing", ["segment", "label"])
def test_missing_annotation_field(tmp_path, missing):
    annotation = {"segment": [1, 2], "label": "Dog"}
    del annotation[missing]
    _reject(tmp_path, _one_video([annotation]), f"missing '{missing}'",
            field=f"annotations[0].{missing}")


@pytest.mark.parametrize("segment", [[1, None], [1, "2"], [float("nan"), 2], [1]],
                         ids=["none", "string", "nan", "one-value"])
def test_malformed_segment(tmp_path, segment):
    _reject(tmp_path, _one_video([{"segment": segment, "label": "Dog"}]), "expected",
            field="annotations[0].segment")


def test_missing_database(tmp_path):
    _reject(tmp_path, {"classes": ["Dog"]}, "'database'", video=None, field="database")


def test_annotations_null(tmp_path):
    data = _one_video(None)
    del data["classes"]  # the class list is then derived, which must not crash on null
    _reject(tmp_path, data, "expected a list", field="annotations")


def test_malformed_json(tmp_path):
    path = _annotation_file(tmp_path, '{"database": {"clip": ')
    with pytest.raises(InputError, match="not valid JSON") as excinfo:
        load_annotations(path)
    assert_names(excinfo, file=path)


def test_inconsistent_label_id(tmp_path):
    data = {"database": {
        "a": {"subset": "training", "duration": 10,
              "annotations": [{"segment": [1, 2], "label": "Dog", "label_id": 0}]},
        "b": {"subset": "training", "duration": 10,
              "annotations": [{"segment": [1, 2], "label": "Speech", "label_id": 1},
                              {"segment": [3, 4], "label": "Dog", "label_id": 1}]}}}
    _reject(tmp_path, data, "has label_id 1 here but 0 elsewhere", video="b",
            field="annotations[1].label_id")


def test_inconsistent_label_id_with_a_class_list(tmp_path):
    data = _one_video([{"segment": [1, 2], "label": "Dog", "label_id": 0},
                       {"segment": [3, 4], "label": "Dog", "label_id": 1}])
    _reject(tmp_path, data, "here but 0 elsewhere", field="annotations[1].label_id")


def test_two_labels_sharing_a_label_id(tmp_path):
    data = {"database": {"a": {"subset": "training", "duration": 10, "annotations": [
        {"segment": [1, 2], "label": "Dog", "label_id": 0},
        {"segment": [3, 4], "label": "Speech", "label_id": 0}]}}}
    _reject(tmp_path, data, "share label_id 0", video=None, field="label_id")


def test_empty_split(tmp_path):
    videos = {"a": video("training", STEPS), "b": video("testing", STEPS)}
    spec, _ = build(tmp_path, videos)
    with pytest.raises(InputError, match="subset 'validation' has no videos") as excinfo:
        LocalizationDataset(spec, "validation", seed=0)
    assert_names(excinfo, file=tmp_path / "annotations.json", field="subset")


def test_annotation_errors_surface_through_the_dataset(tmp_path):
    spec, _ = build(tmp_path, {"a": video("training", STEPS, [(1.0, 2.0, "Cat")])})
    with pytest.raises(InputError, match="unknown label 'Cat'") as excinfo:
        _construct(spec)
    assert_names(excinfo, file=tmp_path / "annotations.json", video="a",
                 field="annotations[0].label")
