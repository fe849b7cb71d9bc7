"""Feature stores: per video a visual and an audio matrix (T x C, float32) on one time grid.

Two layouts, both read without unpickling anything:

* ``npy`` - a directory holding ``{id_prefix}{video}{visual_suffix}.npy`` and
  ``{id_prefix}{video}{audio_suffix}.npy`` (the layout of the released ONE-PEACE features, whose
  suffixes are ``_one_peace_video_finetune`` / ``_one_peace_audio``);
* ``hdf5`` - one file (``.h5`` / ``.hdf5``) with datasets ``/<video>/visual`` and ``/<video>/audio``.

An optional ``meta.json`` (npy) or root attributes (hdf5) record how the features were made
(encoders, dims, grid); stores written by ``uniav extract`` always have it.

Every problem is reported as :class:`~uniav.errors.InputError` naming the file, the video and
the field (``visual`` / ``audio``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from uniav.errors import InputError
from uniav.fileio import atomic_path, atomic_write_text, load_json_file, parse_json_text

META_FILE = "meta.json"
MODALITIES = ("visual", "audio")


@dataclass(frozen=True)
class FeatureLayout:
    """How the files of a store are named (see module docstring)."""

    format: str = "npy"
    id_prefix: str = ""
    visual_suffix: str = "_visual"
    audio_suffix: str = "_audio"

    def suffix(self, modality: str) -> str:
        return self.visual_suffix if modality == "visual" else self.audio_suffix


def layout_of(data_config: Any) -> FeatureLayout:
    """The :class:`FeatureLayout` of a ``DatasetTaskConfig``."""
    return FeatureLayout(format=data_config.feature_format, id_prefix=data_config.id_prefix,
                         visual_suffix=data_config.visual_suffix,
                         audio_suffix=data_config.audio_suffix)


class FeatureStore:
    """Read access to one feature store.

    Args:
        path: the npy directory or the HDF5 file.
        layout: file naming (only ``id_prefix`` matters for HDF5).
        length_tolerance: largest audio/visual length difference (in steps) that is fixed by
            truncating both to the shorter one; a larger one is an error (``None``: any
            difference is cut).
    """

    def __init__(self, path: str | Path, layout: FeatureLayout = FeatureLayout(),
                 length_tolerance: int | None = 2):
        self.path = Path(path)
        self.layout = layout
        self.length_tolerance = length_tolerance
        if layout.format not in ("npy", "hdf5"):
            raise InputError(f"unknown feature format {layout.format!r} (npy or hdf5)",
                             file=self.path)
        if layout.format == "npy" and not self.path.is_dir():
            raise InputError("feature directory not found (run `uniav extract` or see "
                             "docs/datasets.md)", file=self.path)
        if layout.format == "hdf5" and not self.path.is_file():
            raise InputError("HDF5 feature file not found", file=self.path)
        self.meta = self._read_meta()

    # ---- metadata -------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any] | None:
        if self.layout.format == "npy":
            meta_path = self.path / META_FILE
            if not meta_path.exists():
                return None
            meta = load_json_file(meta_path)
            if not isinstance(meta, dict):
                raise InputError("expected a JSON object", file=meta_path)
            return meta
        import h5py
        try:
            with h5py.File(self.path, "r") as handle:
                text = handle.attrs.get("meta")
        except OSError as exc:
            raise InputError(f"cannot open HDF5 file ({exc})", file=self.path) from None
        if text is None:
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise InputError("the 'meta' attribute is not JSON text", file=self.path,
                             field="meta")
        try:
            meta = parse_json_text(text, file=self.path)
        except InputError as exc:
            raise InputError(f"the 'meta' attribute: {exc.message}", file=self.path,
                             field="meta") from None
        if not isinstance(meta, dict):
            raise InputError("the 'meta' attribute is not a JSON object", file=self.path,
                             field="meta")
        return meta

    def dims(self) -> tuple[int, int] | None:
        """(visual_dim, audio_dim) recorded in the metadata, if any."""
        if self.meta and "visual_dim" in self.meta and "audio_dim" in self.meta:
            dims = self.meta["visual_dim"], self.meta["audio_dim"]
            for name, value in zip(("visual_dim", "audio_dim"), dims):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InputError(f"expected a positive integer, got {value!r}",
                                     file=self.path / META_FILE if self.layout.format == "npy"
                                     else self.path, field=f"meta.{name}")
            return int(dims[0]), int(dims[1])
        return None

    # ---- listing --------------------------------------------------------------------------

    def file_of(self, video_id: str, modality: str) -> Path:
        """The file that holds one modality of one video."""
        if self.layout.format == "hdf5":
            return self.path
        return self.path / f"{self.layout.id_prefix}{video_id}{self.layout.suffix(modality)}.npy"

    def video_ids(self) -> set[str]:
        """Ids of the videos that have both modalities in the store."""
        if self.layout.format == "hdf5":
            import h5py
            with h5py.File(self.path, "r") as handle:
                keys = [k for k in handle.keys() if isinstance(handle[k], h5py.Group)]
            prefix = self.layout.id_prefix
            return {k[len(prefix):] for k in keys if k.startswith(prefix)}
        found: dict[str, set[str]] = {}
        prefix = self.layout.id_prefix
        for modality in MODALITIES:
            suffix = self.layout.suffix(modality) + ".npy"
            for entry in os.scandir(self.path):
                name = entry.name
                if name.startswith(prefix) and name.endswith(suffix):
                    found.setdefault(name[len(prefix):-len(suffix)], set()).add(modality)
        return {vid for vid, mods in found.items() if len(mods) == 2}

    # ---- reading --------------------------------------------------------------------------

    def read(self, video_id: str, expected_dims: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Load and validate one video's features.

        Args:
            video_id: the video (without ``id_prefix``).
            expected_dims: (visual_dim, audio_dim) the caller needs; defaults to the metadata's.

        Returns:
            ``(visual, audio)``, float32 arrays of shape (T, C_visual) and (T, C_audio) with
            the same T (lengths within ``length_tolerance`` are truncated to the shorter).

        Raises:
            InputError: missing/truncated/empty file, pickled or non-numeric data, wrong rank,
                wrong or swapped dims, NaN/Inf values, empty sequence, length mismatch.
        """
        dims = expected_dims or self.dims()
        arrays = []
        for i, modality in enumerate(MODALITIES):
            array = self._load_array(video_id, modality)
            arrays.append(_validate_matrix(array, None if dims is None else dims[i],
                                           file=self.file_of(video_id, modality),
                                           video=video_id, field=modality))
        visual, audio = arrays
        if visual.shape[0] != audio.shape[0]:
            diff = abs(visual.shape[0] - audio.shape[0])
            if self.length_tolerance is not None and diff > self.length_tolerance:
                raise InputError(
                    f"audio has {audio.shape[0]} steps but visual has {visual.shape[0]} "
                    f"(difference {diff} > tolerance {self.length_tolerance})",
                    file=self.file_of(video_id, "audio"), video=video_id, field="audio")
            steps = min(visual.shape[0], audio.shape[0])
            visual, audio = visual[:steps], audio[:steps]
        return visual, audio

    def _load_array(self, video_id: str, modality: str) -> np.ndarray:
        file = self.file_of(video_id, modality)
        if self.layout.format == "hdf5":
            import h5py
            key = f"{self.layout.id_prefix}{video_id}/{modality}"
            try:
                with h5py.File(self.path, "r") as handle:
                    node = handle.get(key)
                    if not isinstance(node, h5py.Dataset):  # absent, or a group
                        raise InputError("no such dataset in the HDF5 file", file=file,
                                         video=video_id, field=modality)
                    return np.asarray(node[()])
            except OSError as exc:
                raise InputError(f"cannot read HDF5 data ({exc})", file=file, video=video_id,
                                 field=modality) from None
        if not file.exists():
            raise InputError("feature file missing", file=file, video=video_id, field=modality)
        try:
            array = np.load(file, allow_pickle=False)
        except ValueError as exc:  # truncated data, object arrays, bad header
            raise InputError(f"unreadable .npy ({exc})", file=file, video=video_id,
                             field=modality) from None
        except (EOFError, OSError) as exc:
            reason = str(exc) or "file is empty"
            raise InputError(f"unreadable .npy ({reason})", file=file, video=video_id,
                             field=modality) from None
        if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for a zip archive
            array.close()
            raise InputError("not a .npy array (an .npz archive?)", file=file, video=video_id,
                             field=modality)
        return array


def _validate_matrix(array: np.ndarray, expected_dim: int | None, *, file: Path, video: str,
                     field: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"expected numeric features, found dtype {array.dtype}", file=file,
                         video=video, field=field)
    if array.ndim != 2:
        raise InputError(f"expected a T x C matrix, found shape {tuple(array.shape)}", file=file,
                         video=video, field=field)
    steps, channels = array.shape
    if expected_dim is not None and channels != expected_dim:
        if steps == expected_dim:
            raise InputError(f"axes look swapped: shape {tuple(array.shape)} is C x T, "
                             f"expected T x {expected_dim}", file=file, video=video, field=field)
        raise InputError(f"expected {expected_dim} channels, found {channels}", file=file,
                         video=video, field=field)
    if steps == 0:
        raise InputError("empty feature sequence (T = 0)", file=file, video=video, field=field)
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        raise InputError(f"{int(bad.sum())} non-finite values (NaN/Inf)", file=file, video=video,
                         field=field)
    return array


# --------------------------------------------------------------------------------------------
# Shapes without reading the data
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MatrixInfo:
    """Shape and dtype of one stored feature matrix (read from its header)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    file: Path


def npy_info(file: Path, video_id: str, modality: str) -> MatrixInfo:
    """Shape and dtype from a ``.npy`` header; checks the data is all there (no reading)."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            data_start = handle.tell()
    except FileNotFoundError:
        raise InputError("feature file missing", file=file, video=video_id,
                         field=modality) from None
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"unreadable .npy ({exc or 'file is empty'})", file=file,
                         video=video_id, field=modality) from None
    if dtype.hasobject:
        raise InputError("holds Python objects (a pickled array); refused - features must be "
                         "numeric", file=file, video=video_id, field=modality)
    needed = data_start + math.prod(shape) * dtype.itemsize
    size = file.stat().st_size
    if size < needed:
        raise InputError(f"truncated .npy: the header promises {needed} bytes, the file has "
                         f"{size} (file not fully written?)", file=file, video=video_id,
                         field=modality)
    return MatrixInfo(tuple(int(n) for n in shape), dtype, file)


def matrix_infos(store: FeatureStore, video_ids: Sequence[str]
                  ) -> dict[str, tuple[MatrixInfo, MatrixInfo]]:
    """(visual, audio) header info of every video, from ``.npy`` headers or HDF5 shapes (no
    feature data is read)."""
    infos: dict[str, tuple[MatrixInfo, MatrixInfo]] = {}
    if store.layout.format == "npy":
        for video_id in video_ids:
            infos[video_id] = tuple(npy_info(store.file_of(video_id, m), video_id, m)
                                    for m in MODALITIES)  # type: ignore[assignment]
        return infos
    import h5py

    try:
        with h5py.File(store.path, "r") as handle:
            for video_id in video_ids:
                pair = []
                for modality in MODALITIES:
                    # same key layout as FeatureStore: /<id_prefix><video>/<modality>
                    node = handle.get(f"{store.layout.id_prefix}{video_id}/{modality}")
                    if not isinstance(node, h5py.Dataset):
                        raise InputError("no such dataset in the HDF5 file", file=store.path,
                                         video=video_id, field=modality)
                    pair.append(MatrixInfo(tuple(int(n) for n in node.shape), node.dtype,
                                            store.path))
                infos[video_id] = (pair[0], pair[1])
    except OSError as exc:
        raise InputError(f"cannot read HDF5 file ({exc})", file=store.path) from None
    return infos


def store_sample(store: FeatureStore, count: int = 3) -> str:
    """A few entry names of a store (file names or HDF5 groups), for error messages."""
    if store.layout.format == "npy":
        names = sorted(p.name for p in store.path.iterdir() if p.suffix == ".npy")
    else:
        import h5py

        with h5py.File(store.path, "r") as handle:
            names = sorted(handle.keys())
    return ", ".join(repr(n) for n in names[:count]) or "nothing"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write a float32 ``.npy`` atomically (never a partial file under the final name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


def write_npy_video(directory: Path, layout: FeatureLayout, video_id: str, visual: np.ndarray,
                    audio: np.ndarray) -> None:
    """Write one video's two matrices (T x C each) into an npy store, each file atomically."""
    for modality, array in zip(MODALITIES, (visual, audio)):
        name = f"{layout.id_prefix}{video_id}{layout.suffix(modality)}.npy"
        atomic_save_npy(Path(directory) / name, array)


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write the ``meta.json`` of an npy store."""
    atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def pack_hdf5(path: Path, videos: Iterable[tuple[str, np.ndarray, np.ndarray]],
              meta: dict[str, Any] | None = None, id_prefix: str = "") -> None:
    """Write an HDF5 store from ``(video_id, visual, audio)`` triples, atomically (temp + rename)."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            if meta is not None:
                handle.attrs["meta"] = json.dumps(meta, sort_keys=True)
            for video_id, visual, audio in videos:
                group = handle.create_group(f"{id_prefix}{video_id}")
                group.create_dataset("visual", data=np.asarray(visual, dtype=np.float32))
                group.create_dataset("audio", data=np.asarray(audio, dtype=np.float32))
