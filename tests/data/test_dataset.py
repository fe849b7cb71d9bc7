"""The one dataset class: splits, time grid, resizing, training-time sampling, batching."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from tests.data._dataset_fixtures import (CLASSES, DIMS, ScriptedIntegers, assert_names, build,
                                          duration_for, video, write_store)
from uniav.config import SubsetNames, load_config
from uniav.data.batching import Batch, VideoItem, collate, padded_length
from uniav.data.crops import filter_training_instances, holdout_split, sample_truncation
from uniav.data.dataset import LocalizationDataset
from uniav.data.features import FeatureLayout
from uniav.errors import ConfigError, InputError
from uniav.grid import TimeGrid

NO_VALIDATION = SubsetNames(train="training", validation=None, test="testing")


# ---- time grid ---------------------------------------------------------------------------------

def test_seconds_to_grid_hand_case(tmp_path):
    # 16 fps, stride 4, window 16: x = (t * 16 - 8) / 4
    videos = {"clip": video("training", 20, [(1.0, 2.5, "Speech"), (0.25, 5.75, "Dog")])}
    spec, features = build(tmp_path, videos)
    item = LocalizationDataset(spec, "train", seed=0).get(0)
    assert item.segments.dtype == torch.float32 and item.labels.dtype == torch.int64
    assert item.segments.tolist() == [[2.0, 8.0], [-1.0, 21.0]]
    assert item.labels.tolist() == [1, 0]
    assert item.duration == 5.75
    assert item.grid == TimeGrid(fps=16.0, stride=4.0, window=16.0)
    assert item.crop_start == 0
    visual, audio = features["clip"]
    assert torch.equal(item.visual, torch.from_numpy(visual.T))  # (T, C) on disk -> (C, T)
    assert torch.equal(item.audio, torch.from_numpy(audio.T))


def test_resized_grid_hand_case(tmp_path):
    # 20 steps of stride 8 / window 16 resized to 16: stride = window = (19 * 8 + 16) / 16 = 10.5
    # x = (t * 16 - 5.25) / 10.5, so t = 2.953125 -> 4 and t = 6.890625 -> 10
    steps = 20
    videos = {"long": video("training", steps, [(2.953125, 6.890625, "Alarm")], stride=8)}
    ramp = np.tile(np.arange(steps, dtype=np.float32)[:, None], (1, 3))  # value = step index
    features = {"long": (ramp[:, :2].copy(), ramp.copy())}
    spec, _ = build(tmp_path, videos, features=features, dims=(2, 3), feat_stride=8,
                    resize_length=16, max_seq_len=16)
    dataset = LocalizationDataset(spec, "train", seed=0)
    item = dataset.get(0)
    assert dataset.lengths == [16]
    assert (item.grid.stride, item.grid.window) == (10.5, 10.5)
    assert item.segments.tolist() == [[4.0, 10.0]]
    assert item.visual.shape == (2, 16) and item.audio.shape == (3, 16)
    # linear, align_corners=False: output step d samples input position (d + 0.5) * 20/16 - 0.5,
    # clamped to [0, 19]; on a ramp that position is the value
    expected = np.clip((np.arange(16) + 0.5) * 1.25 - 0.5, 0, 19)
    assert np.allclose(item.visual[0].numpy(), expected, atol=1e-6)
    assert np.allclose(item.audio[2].numpy(), expected, atol=1e-6)


def test_classes_come_from_the_file_for_every_split(tmp_path):
    videos = {"a": video("training", 10, [(1.0, 2.0, "Alarm")]),
              "b": video("validation", 10), "c": video("testing", 10, [(1.0, 2.0, "Dog")])}
    spec, _ = build(tmp_path, videos)
    for split in ("train", "validation", "test"):
        assert LocalizationDataset(spec, split, seed=0).classes == CLASSES
    assert LocalizationDataset(spec, "train", seed=0).get(0).labels.tolist() == [2]


def test_subsets_map_to_splits_in_file_order(tmp_path):
    videos = {"t2": video("training", 10), "v1": video("validation", 10),
              "t1": video("training", 10), "x1": video("testing", 10)}
    spec, _ = build(tmp_path, videos)
    assert LocalizationDataset(spec, "train", seed=0).video_ids == ["t2", "t1"]
    assert LocalizationDataset(spec, "validation", seed=0).video_ids == ["v1"]
    assert LocalizationDataset(spec, "test", seed=0).video_ids == ["x1"]


def test_load_config_spec_builds_a_dataset(tmp_path, repo_root):
    videos = {"a": video("training", 12, [(1.0, 2.0, "Dog")]), "b": video("testing", 12)}
    spec, _ = build(tmp_path, videos)
    key = "datasets.synthetic.tasks.sed"
    config = load_config(repo_root / "params.yaml",
                         [f"{key}.annotations={spec.data.annotations}",
                          f"{key}.features={spec.data.features}"])
    dataset = LocalizationDataset(config.task_spec("sed"), "test", seed=config.seed)
    assert dataset.video_ids == ["b"] and dataset.dims == DIMS


# ---- validation hold-out -------------------------------------------------------------------------

def _training_videos(count: int) -> dict[str, dict]:
    return {f"vid{i:02d}": video("training", 8) for i in range(count)}


def test_holdout_is_deterministic_disjoint_and_sized(tmp_path):
    videos = {**_training_videos(20), "test0": video("testing", 8)}
    spec, _ = build(tmp_path, videos, subsets=NO_VALIDATION, holdout_fraction=0.25)
    train = LocalizationDataset(spec, "train", seed=3)
    validation = LocalizationDataset(spec, "validation", seed=3)
    assert len(validation) == 5 and len(train) == 15
    assert set(train.video_ids).isdisjoint(validation.video_ids)
    assert set(train.video_ids) | set(validation.video_ids) == set(_training_videos(20))
    assert "test0" not in validation.video_ids  # the test subset never validates
    assert LocalizationDataset(spec, "validation", seed=3).video_ids == validation.video_ids
    other_seeds = {tuple(LocalizationDataset(spec, "validation", seed=s).video_ids)
                   for s in range(4, 9)}
    assert len(other_seeds | {tuple(validation.video_ids)}) > 1  # the seed matters
    # file order is kept within each split
    assert train.video_ids == sorted(train.video_ids)


def test_holdout_does_not_depend_on_file_order(tmp_path):
    ids = [f"vid{i:02d}" for i in range(30)]
    forward = holdout_split(ids, 0.2, seed=11)
    assert forward == holdout_split(ids[::-1], 0.2, seed=11)
    assert len(forward) == 6
    videos = _training_videos(30)
    spec_a, _ = build(tmp_path / "a", videos, subsets=NO_VALIDATION, holdout_fraction=0.2)
    spec_b, _ = build(tmp_path / "b", dict(reversed(list(videos.items()))),
                      subsets=NO_VALIDATION, holdout_fraction=0.2)
    held_a = LocalizationDataset(spec_a, "validation", seed=11).video_ids
    held_b = LocalizationDataset(spec_b, "validation", seed=11).video_ids
    assert set(held_a) == set(held_b) == forward


def test_holdout_keeps_at_least_one_video_each_side():
    assert len(holdout_split(["a", "b", "c"], 0.01, seed=0)) == 1
    assert len(holdout_split(["a", "b", "c"], 0.99, seed=0)) == 2
    assert len(holdout_split(["a", "b"], 0.5, seed=0)) == 1
    with pytest.raises(ValueError):
        holdout_split(["a"], 0.5, seed=0)


def test_holdout_fraction_out_of_range_is_a_config_error(tmp_path):
    spec, _ = build(tmp_path, _training_videos(4), subsets=NO_VALIDATION, holdout_fraction=1.0)
    with pytest.raises(ConfigError, match="holdout_fraction"):
        LocalizationDataset(spec, "validation", seed=0)


# ---- annotations --------------------------------------------------------------------------------

def test_duplicate_annotations_are_removed_and_counted(tmp_path):
    anns = [(1.0, 2.0, "Dog"), (1.0004, 2.0004, "Dog"), (1.0, 2.0, "Speech"), (1.0, 2.01, "Dog")]
    videos = {"a": video("training", 20, anns), "b": video("training", 20, anns[:2])}
    spec, _ = build(tmp_path, videos)
    dataset = LocalizationDataset(spec, "train", seed=0)
    assert dataset.report.to_dict()["annotations_dropped"] == {"duplicate": 2}
    assert dataset.report.to_dict()["examples"]["annotations_dropped.duplicate"] == ["a", "b"]
    assert dataset.get(0).labels.tolist() == [0, 1, 0]  # the 2nd annotation was a repeat
    assert len(dataset.get(1).labels) == 1
    assert [len(v.labels) for v in dataset.ground_truth()] == [3, 1]
    kept = LocalizationDataset(spec, "train", seed=0, remove_duplicate_gt=False)
    assert kept.report.to_dict()["annotations_dropped"] == {} and len(kept.get(0).labels) == 4


def test_video_without_annotations_is_allowed(tmp_path):
    spec, _ = build(tmp_path, {"quiet": video("training", 40)}, max_seq_len=16)
    dataset = LocalizationDataset(spec, "train", seed=0)
    assert dataset.get(0).segments.shape == (0, 2)
    item = dataset.get(0, np.random.default_rng(0))
    assert item.length == 16 and item.segments.shape == (0, 2) and item.labels.shape == (0,)


# ---- training-time sampling: hand cases ----------------------------------------------------------

def test_training_filter_drops_instances_beyond_the_features():
    # features end at T + offset = 10 + 2 = 12
    segments = np.array([[2.0, 6.0], [8.0, 14.0], [11.0, 20.0], [12.0, 13.0]])
    labels = np.array([0, 1, 2, 0])
    kept, kept_labels = filter_training_instances(segments, labels, 10, 2.0, 0.5)
    # [8, 14]: 4/6 inside -> kept, clamped; [11, 20]: 1/9 -> dropped; [12, 13] starts at the end
    assert kept.tolist() == [[2.0, 6.0], [8.0, 12.0]]
    assert kept_labels.tolist() == [0, 1]


def test_truncation_of_a_long_video_hand_case():
    # T = 40 > max_seq_len = 16; window [10, 26], extended by offset 2 to [8, 28]
    segments = np.array([[12.0, 20.0], [6.0, 14.0], [25.0, 35.0], [0.0, 4.0]])
    labels = np.array([0, 1, 2, 0])
    rng = ScriptedIntegers((0, 24, 10))
    crop = sample_truncation(40, segments, labels, rng, max_seq_len=16, crop_ratio=(0.9, 1.0),
                             trunc_thresh=0.5, offset=2.0)
    assert (crop.start, crop.length) == (10, 16)
    # [12, 20] inside -> [2, 10]; [6, 14] 6/8 inside -> clipped to [8, 14] -> [-2, 4];
    # [25, 35] 3/10 inside -> dropped; [0, 4] outside -> dropped
    assert crop.segments.tolist() == [[2.0, 10.0], [-2.0, 4.0]]
    assert crop.labels.tolist() == [0, 1]
    assert rng.draws == []


def test_truncation_retries_until_an_instance_is_kept():
    segments = np.array([[30.0, 34.0]])
    rng = ScriptedIntegers((0, 24, 0), (0, 24, 3), (0, 24, 20))
    crop = sample_truncation(40, segments, np.array([1]), rng, max_seq_len=16,
                             crop_ratio=(0.9, 1.0), trunc_thresh=0.5, offset=2.0)
    # [0, 16] and [3, 19] (extended to 21) miss it; [20, 36] keeps it
    assert crop.start == 20 and crop.segments.tolist() == [[10.0, 14.0]]
    assert crop.labels.tolist() == [1]


def test_truncation_without_any_kept_instance_returns_the_last_window():
    segments = np.array([[30.0, 34.0]])
    draws = [(0, 24, 0)] * 4 + [(0, 24, 5)]
    crop = sample_truncation(40, segments, np.array([1]), ScriptedIntegers(*draws),
                             max_seq_len=16, crop_ratio=(0.9, 1.0), trunc_thresh=0.5,
                             offset=2.0, max_trials=5)
    assert (crop.start, crop.length) == (5, 16)
    assert crop.segments.shape == (0, 2) and crop.labels.shape == (0,)


def test_short_video_is_cropped_to_a_length_within_crop_ratio():
    # T = 40 <= 64: length in [round(0.9 * 40), round(1.0 * 40)] = [36, 40]; then start in [0, 4]
    segments = np.array([[1.0, 5.0], [36.0, 39.0]])
    rng = ScriptedIntegers((36, 40, 37), (0, 3, 3))
    crop = sample_truncation(40, segments, np.array([0, 2]), rng, max_seq_len=64,
                             crop_ratio=(0.9, 1.0), trunc_thresh=0.5, offset=2.0)
    # window [3, 40], extended [1, 42]: both kept; shifted by -3
    assert (crop.start, crop.length) == (3, 37)
    assert crop.segments.tolist() == [[-2.0, 2.0], [33.0, 36.0]]


def test_short_video_is_not_cropped_when_the_drawn_length_is_the_whole():
    segments = np.array([[1.0, 5.0]])
    crop = sample_truncation(40, segments, np.array([0]), ScriptedIntegers((36, 40, 40)),
                             max_seq_len=64, crop_ratio=(0.9, 1.0), trunc_thresh=0.5, offset=2.0)
    assert (crop.start, crop.length) == (0, 40) and crop.segments.tolist() == [[1.0, 5.0]]


# ---- training-time sampling: through the dataset -----------------------------------------------

def _sampling_dataset(tmp_path, **kwargs) -> LocalizationDataset:
    # grid x = 4t - 2 (16 fps, stride 4, window 16; offset 2)
    videos = {"long": video("training", 60, [(3.0, 5.0, "Dog"), (10.0, 12.5, "Speech")]),
              "short": video("training", 24, [(1.5, 4.0, "Alarm")])}
    spec, _ = build(tmp_path, videos, max_seq_len=32, **kwargs)
    return LocalizationDataset(spec, "train", seed=0)


def test_training_items_are_crops_of_the_whole_video(tmp_path):
    dataset = _sampling_dataset(tmp_path)
    for index, steps in ((0, 60), (1, 24)):
        whole = dataset.get(index)
        for seed in range(20):
            item = dataset.get(index, np.random.default_rng(seed))
            if steps > 32:
                assert item.length == 32
            else:
                assert round(0.9 * steps) <= item.length <= steps
            start = item.crop_start
            assert torch.equal(item.visual, whole.visual[:, start:start + item.length])
            assert torch.equal(item.audio, whole.audio[:, start:start + item.length])
            assert len(item.labels) >= 1  # both videos always allow a crop with an instance
            assert (item.segments[:, 0] >= -2.0).all()
            assert (item.segments[:, 1] <= item.length + 2.0).all()
            # each kept instance is its whole-video counterpart clipped to the extended window
            for segment, label in zip(item.segments.tolist(), item.labels.tolist()):
                originals = whole.segments[whole.labels == label] - start
                clipped = originals.clamp(min=-2.0, max=item.length + 2.0)
                assert segment in clipped.tolist()


def test_same_rng_seed_gives_the_same_item(tmp_path):
    dataset = _sampling_dataset(tmp_path)
    first = dataset.get(0, np.random.default_rng([7, 1, 2]))
    second = dataset.get(0, np.random.default_rng([7, 1, 2]))
    assert first.crop_start == second.crop_start
    assert torch.equal(first.visual, second.visual) and torch.equal(first.segments, second.segments)
    starts = {dataset.get(0, np.random.default_rng(s)).crop_start for s in range(10)}
    assert len(starts) > 1  # and the rng does drive it


def test_items_do_not_share_memory_with_the_cache(tmp_path):
    dataset = _sampling_dataset(tmp_path)
    item = dataset.get(0)
    item.visual.zero_()
    assert dataset.get(0).visual.abs().sum() > 0


def test_features_shorter_than_the_duration_are_counted_and_filter_instances(tmp_path, caplog):
    # 20 steps stored, the duration implies 26: kept and counted; grid x = 4t - 2, so the
    # features end at 20 + 2 = 22 (t = 6.0): [5.0, 6.5] = [18, 24] keeps 4/6 -> clamped to [18, 22]
    videos = {"gap": video("training", 20, [(1.0, 2.0, "Dog"), (5.0, 6.5, "Speech"),
                                            (6.2, 7.0, "Alarm")], duration=duration_for(26))}
    spec, _ = build(tmp_path, videos, max_seq_len=64, crop_ratio=(1.0, 1.0))
    with caplog.at_level(logging.WARNING, logger="uniav.data.report"):
        dataset = LocalizationDataset(spec, "train", seed=0)
    report = dataset.report.to_dict()
    assert report["videos_adjusted"] == {"features_short": 1}
    assert report["annotations_dropped"] == {"past_features": 1}
    assert report["annotations_clamped"] == {"past_features": 1}
    assert "1 features_short" in caplog.text and "1 past_features" in caplog.text
    assert len(dataset.ground_truth()[0].labels) == 3  # evaluation keeps every instance
    item = dataset.get(0, np.random.default_rng(0))
    assert item.segments.tolist() == [[2.0, 6.0], [18.0, 22.0]]
    assert item.labels.tolist() == [0, 1]


# ---- batching -----------------------------------------------------------------------------------

def test_padded_length_policy():
    assert padded_length([10, 32], max_seq_len=32, max_stride=8, training=True) == 32
    with pytest.raises(ValueError):
        padded_length([33], max_seq_len=32, max_stride=8, training=True)
    assert padded_length([5, 20], max_seq_len=32, max_stride=8, training=False) == 32
    assert padded_length([5, 33], max_seq_len=32, max_stride=8, training=False) == 40
    assert padded_length([48], max_seq_len=32, max_stride=16, training=False) == 48
    assert padded_length([49], max_seq_len=32, max_stride=16, training=False) == 64
    with pytest.raises(ValueError):
        padded_length([], max_seq_len=32, max_stride=8, training=False)


def test_collate_pads_and_masks(tmp_path):
    videos = {"a": video("training", 12, [(1.0, 2.0, "Dog")]),
              "b": video("training", 7, [(0.5, 1.0, "Speech"), (1.0, 1.5, "Alarm")])}
    spec, features = build(tmp_path, videos)
    dataset = LocalizationDataset(spec, "train", seed=0)
    items = [dataset.get(0), dataset.get(1)]
    batch = collate(items, 16)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.visual.shape == (2, DIMS[0], 16) and batch.audio.shape == (2, DIMS[1], 16)
    assert batch.mask.dtype == torch.bool
    assert batch.mask.sum(dim=1).tolist() == [12, 7]
    assert batch.mask[1, :7].all() and not batch.mask[1, 7:].any()
    assert torch.equal(batch.visual[1, :, :7], torch.from_numpy(features["b"][0].T))
    assert not batch.visual[1, :, 7:].any() and not batch.audio[0, :, 12:].any()
    assert [s.shape for s in batch.segments] == [(1, 2), (2, 2)]
    assert [lab.tolist() for lab in batch.labels] == [[0], [1, 2]]
    meta = batch.videos[1]
    assert (meta.video_id, meta.length) == ("b", 7)
    assert meta.grid == TimeGrid(fps=16.0, stride=4.0, window=16.0)
    assert meta.duration == duration_for(7)
    moved = batch.to("cpu")
    assert moved.visual.device.type == "cpu" and len(moved) == 2
    with pytest.raises(ValueError, match="padded length"):
        collate(items, 10)


def test_collate_refuses_mixed_dims():
    def item(channels: int) -> VideoItem:
        return VideoItem("v", torch.zeros(channels, 4), torch.zeros(3, 4), torch.zeros(0, 2),
                         torch.zeros(0, dtype=torch.int64), 1.0, TimeGrid(16.0, 4.0, 16.0))

    with pytest.raises(ValueError, match="dims"):
        collate([item(2), item(5)], 8)


# ---- dims and stores ----------------------------------------------------------------------------

def test_dims_mismatch_against_expected_dims(tmp_path):
    spec, _ = build(tmp_path, {"a": video("training", 8)}, meta=False)
    assert LocalizationDataset(spec, "train", seed=0, expected_dims=DIMS).dims == DIMS
    with pytest.raises(InputError, match="expected 7 channels") as excinfo:
        LocalizationDataset(spec, "train", seed=0, expected_dims=(7, DIMS[1]))
    assert_names(excinfo, file=tmp_path / "features" / "a_visual.npy", video="a", field="visual")


def test_dims_mismatch_between_store_metadata_and_expected_dims(tmp_path):
    spec, _ = build(tmp_path, {"a": video("training", 8)})
    with pytest.raises(InputError) as excinfo:
        LocalizationDataset(spec, "train", seed=0, expected_dims=(DIMS[0], 9))
    assert_names(excinfo, file=tmp_path / "features" / "meta.json", field="visual_dim/audio_dim")


def test_dims_inconsistent_across_videos_names_the_odd_video(tmp_path):
    videos = {f"v{i}": video("training", 8) for i in range(3)}
    features = {vid: (np.zeros((8, 6), np.float32), np.zeros((8, 5), np.float32)) for vid in videos}
    features["v1"] = (features["v1"][0], np.zeros((8, 4), np.float32))
    spec, _ = build(tmp_path, videos, features=features, meta=False)
    with pytest.raises(InputError, match="expected 5 channels") as excinfo:
        LocalizationDataset(spec, "train", seed=0)
    assert_names(excinfo, file=tmp_path / "features" / "v1_audio.npy", video="v1", field="audio")


def test_hdf5_and_npy_stores_give_identical_items(tmp_path):
    videos = {"a": video("training", 50, [(1.0, 3.0, "Dog"), (8.0, 11.0, "Alarm")]),
              "b": video("training", 20, [(0.5, 2.0, "Speech")])}
    features = build(tmp_path / "npy", videos, max_seq_len=32)[1]
    spec_npy, _ = build(tmp_path / "npy", videos, features=features, max_seq_len=32)
    spec_h5, _ = build(tmp_path / "h5", videos, features=features, feature_format="hdf5",
                       max_seq_len=32)
    npy = LocalizationDataset(spec_npy, "train", seed=0)
    h5 = LocalizationDataset(spec_h5, "train", seed=0)
    lazy = LocalizationDataset(spec_h5, "train", seed=0, preload=False)
    assert npy.video_ids == h5.video_ids == lazy.video_ids and npy.dims == h5.dims == lazy.dims
    for index in range(len(npy)):
        for rng_seed in (None, 1, 2):
            items = [d.get(index, None if rng_seed is None else np.random.default_rng(rng_seed))
                     for d in (npy, h5, lazy)]
            for other in items[1:]:
                assert other.crop_start == items[0].crop_start
                for name in ("visual", "audio", "segments", "labels"):
                    assert torch.equal(getattr(other, name), getattr(items[0], name)), name


def test_preload_false_reads_the_same_items_with_resizing(tmp_path):
    videos = {"a": video("training", 30, [(2.0, 5.0, "Dog")], stride=8)}
    spec, _ = build(tmp_path, videos, feat_stride=8, resize_length=16, max_seq_len=16)
    eager = LocalizationDataset(spec, "train", seed=0)
    lazy = LocalizationDataset(spec, "train", seed=0, preload=False)
    assert lazy.lengths == eager.lengths == [16]
    assert torch.equal(lazy[0].visual, eager[0].visual)
    assert torch.equal(lazy[0].segments, eager[0].segments)
    assert lazy[0].grid.stride == eager[0].grid.stride == (29 * 8 + 16) / 16


def test_id_prefix_and_suffixes_of_the_released_layout(tmp_path):
    videos = {"abc": video("training", 8, [(0.5, 1.0, "Dog")])}
    layout = FeatureLayout(id_prefix="v_", visual_suffix="_one_peace_video_finetune",
                           audio_suffix="_one_peace_audio")
    spec, features = build(tmp_path, videos)
    store = write_store(tmp_path / "released", features, layout=layout)
    assert sorted(p.name for p in store.iterdir()) == ["v_abc_one_peace_audio.npy",
                                                       "v_abc_one_peace_video_finetune.npy"]
    data = dataclasses.replace(spec.data, features=str(store), id_prefix="v_",
                               visual_suffix="_one_peace_video_finetune",
                               audio_suffix="_one_peace_audio")
    dataset = LocalizationDataset(dataclasses.replace(spec, data=data), "train", seed=0)
    assert dataset.video_ids == ["abc"]
    assert torch.equal(dataset.get(0).visual, torch.from_numpy(features["abc"][0].T))
