"""Reading ActivityNet results files: :func:`load_predictions`.

The format (docs/evaluation.md)::

    {"results": {"<video>": [{"segment": [t0, t1], "label": "<class name>", "score": s}, ...]},
     "version": "...", "external_data": {...}}          # extra top-level keys are ignored

A file is read as strictly as every JSON input (docs/reliability.md: a key given twice refused,
absurd nesting an error) and validated as :class:`~uniav.evaluation.predictions.Predictions` are
(booleans are not numbers, each fault named by file, video and field), but fast.  It is decoded
by the C decoder of :mod:`uniav.fileio` - in the plain layout (``results`` mapping video ids to
lists of objects with exactly ``segment``, ``label`` and ``score``; besides ``results`` only
``version`` and ``external_data``) straight into typed records, otherwise into plain values - and
that decode is used only when the census of the validated detections proves it is what the
strict reader gives (:meth:`uniav.fileio.JsonDocument.faithful`: no key given twice, nothing
left out, ...); otherwise the strict reader decides, result or error.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from uniav.errors import InputError
from uniav.evaluation.predictions import Predictions, index_labels
from uniav.jsondoc import (FAST_JSON_LARGE, JsonCensus, JsonDocument, decode_json_fast,
                           json_census, read_json_document)


def load_predictions(path: str | Path) -> Predictions:
    """Read and validate an ActivityNet results JSON file.

    The file is decoded by the fast reader of :mod:`uniav.fileio` - in the plain layout straight
    into typed records, else into plain values - and its result is used when the census of the
    validated detections proves it is the strict reader's (no key given twice, nothing left
    out, ...); otherwise the strict reader decides, as it does for any JSON input.

    Args:
        path: the file (``{"results": {video: [{"segment", "label", "score"}, ...]}}``).

    Returns:
        The :class:`Predictions`.

    Raises:
        InputError: missing file, invalid JSON (a duplicate key, absurd nesting, ...), no
            ``results`` mapping, a malformed detection.
    """
    path = Path(path)
    document = read_json_document(path, missing="predictions file not found")
    predictions = _decode_plain(document)
    if predictions is not None:
        return predictions
    if document.parsed:
        try:
            predictions = _from_file_content(document.value, path)
        except InputError:
            if document.faithful(json_census(document.value)):
                raise  # the strict reader would read the same content: the same error
        else:
            rest = {key: value for key, value in document.value.items() if key != "results"}
            if (document.faithful(_census(rest, predictions))
                    or document.faithful(json_census(document.value))):  # other keys, ...
                return predictions
    return _from_file_content(document.strict(), path)


def _from_file_content(data: Any, path: Path) -> Predictions:
    if not isinstance(data, dict) or "results" not in data:
        raise InputError("expected a JSON object with a 'results' mapping (ActivityNet results "
                         "format)", file=path, field="results")
    return Predictions.from_results(data["results"], file=path)


@lru_cache(maxsize=None)
def _plain_layout() -> tuple[Any, Any] | None:
    """The type the plain layout decodes into - an object with ``results`` (detections with
    exactly ``segment``, ``label``, ``score``) and optionally the ActivityNet ``version`` and
    ``external_data`` (any JSON), nothing else - and the value of an absent field
    (``msgspec.UNSET``); None without msgspec."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is a dependency
        return None

    detection = msgspec.defstruct(
        "Detection", [("segment", tuple[float, float]), ("label", str), ("score", float)],
        gc=False, forbid_unknown_fields=True)
    layout = msgspec.defstruct(
        "ResultsFile", [("results", dict[str, list[detection]]),
                        ("version", Any, msgspec.UNSET), ("external_data", Any, msgspec.UNSET)],
        forbid_unknown_fields=True)
    return layout, msgspec.UNSET


def _decode_plain(document: JsonDocument) -> Predictions | None:
    """The detections of a results file in the plain layout, decoded straight into typed records.

    None - and the general reading takes over - unless the file is in the plain layout
    (:func:`_plain_layout`: ``results`` maps video ids to lists of objects with exactly a
    ``segment`` of two numbers, a string ``label`` and a numeric ``score``) and the census
    proves the decode is the strict reader's.  Raises the value errors (reversed segments, ...)
    of proven content.
    """
    plain = _plain_layout()
    if plain is None:
        return None
    layout, absent = plain
    parsed, content = decode_json_fast(document.raw, layout)
    if not parsed:
        return None
    results = content.results
    detections = list(chain.from_iterable(results.values()))
    n = len(detections)
    if not n:
        return None
    segments = np.fromiter(chain.from_iterable(map(attrgetter("segment"), detections)),
                           dtype=np.float64, count=2 * n).reshape(n, 2)
    scores = np.fromiter(map(attrgetter("score"), detections), dtype=np.float64, count=n)
    label_names, label_index = index_labels(list(map(attrgetter("label"), detections)))
    video_ids = tuple(results)
    video_index = np.repeat(np.arange(len(video_ids), dtype=np.int64),
                            list(map(len, results.values())))
    unchecked = Predictions(video_ids, video_index, segments, scores, label_names, label_index)
    rest = {key: getattr(content, key) for key in ("version", "external_data")
            if getattr(content, key) is not absent}
    if not document.faithful(_census(rest, unchecked)):
        return None
    return Predictions.from_columns(video_ids, video_index, segments, scores, label_names,
                                label_index, file=document.file)


def _census(rest: dict[str, Any], predictions: Predictions) -> JsonCensus:
    """A lower bound of the :class:`JsonCensus` of a results file, from what was validated.

    ``rest``: the top-level object without ``results``.  Each detection is an object holding at
    least ``segment``, ``label`` and ``score`` (three pairs, no ``:`` in these keys); the ``:``
    of the video ids and labels are counted; the other top-level values are walked.  Anything
    else in the file (another key in a detection, ...) makes the count fall short, and then the
    census of everything (or the strict reader) decides.
    """
    frequency = np.bincount(predictions.label_index, minlength=len(predictions.label_names))
    colons = "".join(predictions.video_ids).count(":") + sum(
        name.count(":") * int(n) for name, n in zip(predictions.label_names, frequency)
        if ":" in name)
    large = bool(len(predictions)) and bool(
        np.abs(predictions.segments).max() >= FAST_JSON_LARGE
        or np.abs(predictions.scores).max() >= FAST_JSON_LARGE)
    return json_census(rest) + JsonCensus(
        pairs=1 + len(predictions.video_ids) + 3 * len(predictions), colons=colons,
        depth=6 if len(predictions) else 3, large_float=large)
