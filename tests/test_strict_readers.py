"""Every JSON/YAML/npy/torch input goes through the strict readers (duplicate keys refused,
absurd nesting an error, no unpickling); one test per input file type read outside
uniav.fileio, and a guard that no new raw reader slips in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from uniav.errors import InputError

DEEP = "[" * 100_000 + "]" * 100_000


def test_no_raw_reader_outside_fileio():
    """json.load(s)/yaml.(safe_)load only in uniav/fileio.py; np.load with allow_pickle=False and
    torch.load with weights_only=True everywhere."""
    raw = re.compile(r"\b(json\.loads?|yaml\.(safe_)?load)\(")
    offenders = []
    for path in sorted((REPO_ROOT / "uniav").rglob("*.py")):
        if path.name == "fileio.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if raw.search(code):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
            if "np.load(" in code and "allow_pickle=False" not in code:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


# ---- feature stores ----------------------------------------------------------------------------

def _npy_store(tmp_path: Path, meta_text: str) -> Path:
    store = tmp_path / "features"
    store.mkdir()
    (store / "meta.json").write_text(meta_text)
    return store


@pytest.mark.parametrize("text, message, field", [
    ('{"visual_dim": 8, "audio_dim": 8, "visual_dim": 16}', "duplicate key 'visual_dim'",
     "visual_dim"),
    (DEEP, "nested too deeply", None),
    ('[1, 2]', "expected a JSON object", None),
])
def test_feature_meta_json_is_read_strictly(tmp_path, text, message, field):
    from uniav.data.features import FeatureStore

    store = _npy_store(tmp_path, text)
    with pytest.raises(InputError, match=message) as excinfo:
        FeatureStore(store)
    assert excinfo.value.file == str(store / "meta.json") and excinfo.value.field == field


def test_feature_meta_dims_must_be_positive_integers(tmp_path):
    from uniav.data.features import FeatureStore

    store = _npy_store(tmp_path, '{"visual_dim": "wide", "audio_dim": 8}')
    with pytest.raises(InputError, match="expected a positive integer, got 'wide'") as excinfo:
        FeatureStore(store).dims()
    assert excinfo.value.field == "meta.visual_dim"


def test_hdf5_meta_attribute_with_a_duplicate_key(tmp_path):
    import h5py

    from uniav.data.features import FeatureLayout, FeatureStore

    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["meta"] = '{"fps": 16, "fps": 8}'
    with pytest.raises(InputError, match="the 'meta' attribute: duplicate key 'fps'") as excinfo:
        FeatureStore(path, FeatureLayout(format="hdf5"))
    assert excinfo.value.field == "meta"


# ---- published numbers (uniav tables) -----------------------------------------------------------

def test_published_numbers_with_a_duplicate_key(tmp_path):
    from uniav.report.tables import load_published

    path = tmp_path / "published.yaml"
    path.write_text("source: {citation: x}\nunit: percent\ntables: {}\ntables: {}\n")
    with pytest.raises(InputError, match=r"line 4: duplicate key 'tables'") as excinfo:
        load_published(path)
    assert excinfo.value.file == str(path)


# ---- pinned checksums (uniav download) ----------------------------------------------------------

def test_checksum_lock_with_an_entry_pinned_twice(tmp_path):
    from uniav.prepare.download import ChecksumLock

    path = tmp_path / "checksums.lock.json"
    record = json.dumps({"sha256": "a" * 64, "size": 1, "url": "u", "dest": "d"})
    other = json.dumps({"sha256": "b" * 64, "size": 1, "url": "u", "dest": "d"})
    path.write_text('{"entries": {"anet": %s, "anet": %s}}' % (record, other))
    with pytest.raises(InputError, match="duplicate key 'anet'") as excinfo:
        ChecksumLock(path).get("anet")
    assert excinfo.value.file == str(path)


# ---- training checkpoints -----------------------------------------------------------------------

@pytest.mark.parametrize("pointer, message", [
    ('{"checkpoint": "iter_1.pt", "checkpoint": "iter_2.pt"}', "unreadable"),
    (DEEP, "unreadable"),
    ('{"checkpoint": "../../elsewhere.pt"}', "not a file of"),
])
def test_checkpoint_pointer_is_read_strictly(tmp_path, pointer, message):
    from uniav.engine.checkpoint import POINTER, load_latest_checkpoint

    (tmp_path / POINTER).write_text(pointer)
    with pytest.raises(InputError, match=message) as excinfo:
        load_latest_checkpoint(tmp_path, "hash")
    assert excinfo.value.file == str(tmp_path / POINTER)


# ---- prompt embeddings --------------------------------------------------------------------------

def test_prompt_sidecar_nested_absurdly_is_ignored_not_a_crash(tmp_path):
    from uniav.prepare.prompts import load_prompt_embeddings

    np.save(tmp_path / "tal.npy", np.eye(2, 4, dtype=np.float32))
    (tmp_path / "tal.json").write_text(DEEP)
    assert load_prompt_embeddings(tmp_path / "tal.npy", ["a", "b"]).shape == (2, 4)
