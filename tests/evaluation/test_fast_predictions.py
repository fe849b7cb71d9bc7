"""Reading results files fast changes nothing: ``load_predictions`` and
``Predictions.from_results`` give the same detections - or the same error, naming the same file,
video and field - as reading strictly and validating detection by detection, on valid and on
hostile input (duplicate keys, booleans, NaN, big integers, extra keys, colons in ids, ...)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest

import uniav.evaluation.predictions as predictions_module
from uniav.errors import InputError
from uniav.evaluation.predictions import Predictions
from uniav.evaluation.results_file import load_predictions
from uniav.fileio import parse_json_text
from uniav.jsondoc import JsonDocument


def outcome(build) -> tuple:
    """What building gives: the columns of the Predictions, or the error (text and parts)."""
    try:
        predictions = build()
    except InputError as exc:
        return ("error", str(exc), exc.file, exc.video, exc.field)
    return ("predictions", predictions.video_ids, predictions.label_names,
            predictions.video_index.tolist(), predictions.label_index.tolist(),
            predictions.segments.tobytes(), predictions.scores.tobytes(),
            predictions.segments.dtype.str, predictions.scores.dtype.str)


def one_by_one(monkeypatch, build):
    """``build`` with the fast column path switched off (the detection-by-detection reading)."""
    with monkeypatch.context() as patch:
        patch.setattr(predictions_module, "_plain_columns", lambda results: None)
        return outcome(build)


def strict_load(path: Path) -> Predictions:
    """What ``load_predictions`` did before the fast path: strict text parse, then validation."""
    data = parse_json_text(path.read_text(encoding="utf-8"), file=path)
    if not isinstance(data, dict) or "results" not in data:
        raise InputError("expected a JSON object with a 'results' mapping (ActivityNet results "
                         "format)", file=path, field="results")
    return Predictions.from_results(data["results"], file=path)


def valid_results(rng: random.Random, videos: int = 4, per_video: int = 3) -> dict:
    return {f"v{v}": [{"segment": [round(rng.uniform(0, 50), 3), round(rng.uniform(51, 99), 3)],
                       "label": rng.choice(["Dog", "Speech", "Cat: meow"]),
                       "score": rng.random()} for _ in range(per_video)]
            for v in range(videos)}


# each mutation turns a valid results mapping into something else (valid or not)
def _set(video, i, key, value):
    def mutate(results):
        results[video][i][key] = value
    return mutate


MUTATIONS = {
    "none": lambda results: None,
    "integer bounds": _set("v1", 0, "segment", [1, 20]),
    "mixed bounds": _set("v1", 0, "segment", [1, 20.5]),
    "integer score": _set("v2", 1, "score", 1),
    "boolean score": _set("v2", 1, "score", True),
    "boolean bound": _set("v0", 2, "segment", [True, 3.0]),
    "string score": _set("v1", 1, "score", "high"),
    "null score": _set("v1", 1, "score", None),
    "NaN score": _set("v3", 0, "score", float("nan")),
    "infinite bound": _set("v3", 0, "segment", [0.0, float("inf")]),
    "reversed": _set("v2", 2, "segment", [5.0, 1.0]),
    "zero length": _set("v2", 2, "segment", [5.0, 5.0]),
    "three bounds": _set("v0", 0, "segment", [1.0, 2.0, 3.0]),
    "one bound": _set("v0", 0, "segment", [1.0]),
    "string segment": _set("v0", 0, "segment", "ab"),
    "object segment": _set("v0", 0, "segment", {"a": 1.0, "b": 2.0}),
    "nested bounds": _set("v0", 0, "segment", [[1.0], [2.0]]),
    "integer label": _set("v1", 2, "label", 3),
    "null label": _set("v1", 2, "label", None),
    "huge integer bound": _set("v1", 0, "segment", [0, 10 ** 30]),
    "large integer score": _set("v1", 0, "score", 2 ** 63 + 5),
    "large float bound": _set("v1", 0, "segment", [0.0, 1e300]),
    "extra key": _set("v1", 0, "extra", {"a": 1}),
    "missing score": lambda results: results["v2"][0].pop("score"),
    "detection not an object": lambda results: results["v2"].__setitem__(1, [0, 1, "Dog", 0.5]),
    "detections not a list": lambda results: results.__setitem__("v3", {"segment": [0, 1]}),
    "empty video": lambda results: results.__setitem__("v1", []),
    "no detections at all": lambda results: [results.__setitem__(v, []) for v in results],
    "colon in a video id": lambda results: results.__setitem__("v:9", results.pop("v0")),
    "two faults": lambda results: (_set("v3", 0, "score", True)(results),
                                   _set("v1", 1, "label", 4)(results)),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_from_results_is_the_one_by_one_reading(monkeypatch, name):
    for seed in range(3):
        results = valid_results(random.Random(seed))
        MUTATIONS[name](results)
        before = copy.deepcopy(results)
        fast = outcome(lambda: Predictions.from_results(results, file="f.json"))
        assert fast == one_by_one(monkeypatch,
                                  lambda: Predictions.from_results(results, file="f.json"))
        assert repr(results) == repr(before)  # input untouched


def dump(results: dict, *, text_edit=None) -> str:
    text = json.dumps({"version": "VERSION 1.3", "results": results,
                       "external_data": {"used": True, "details": "x: y"}})
    return text_edit(text) if text_edit else text


TEXT_EDITS = {
    "as written": None,
    "video twice": lambda text: text.replace('"results": {', '"results": {"v2": [], ', 1),
    "key twice in a detection": lambda text: text.replace('"score": ', '"score": 0.5, "score": ',
                                                          1),
    "key twice in external_data": lambda text: text.replace('"used": true',
                                                            '"used": true, "used": false'),
    "results twice": lambda text: text.replace('{"version"', '{"results": {}, "version"'),
    "escaped colon in a label": lambda text: text.replace("Cat: meow", "Cat\\u003a meow"),
    "escaped key": lambda text: text.replace('"label"', '"\\u006cabel"', 1),
    "NaN": lambda text: text.replace('"score": ', '"score": NaN, "x": ', 1),
    "big integer": lambda text: text.replace('"segment": [', '"segment": [1e400, ', 1),
    "not JSON": lambda text: text[:-5],
    "not an object": lambda text: "[" + text + "]",
    "no results": lambda text: text.replace('"results"', '"resultz"'),
    "another top-level key": lambda text: text.replace('{"version"', '{"meta": {"a:b": [1]}, '
                                                                    '"version"'),
    "no version": lambda text: text.replace('"version": "VERSION 1.3", ', ''),
}


@pytest.mark.parametrize("edit", list(TEXT_EDITS))
@pytest.mark.parametrize("mutation", ["none", "boolean score", "extra key", "reversed",
                                      "integer bounds", "colon in a video id",
                                      "huge integer bound", "no detections at all"])
def test_load_predictions_is_the_strict_reading(tmp_path, monkeypatch, edit, mutation):
    results = valid_results(random.Random(1))
    MUTATIONS[mutation](results)
    path = tmp_path / "pred.json"
    path.write_text(dump(results, text_edit=TEXT_EDITS[edit]))
    assert outcome(lambda: load_predictions(path)) == one_by_one(monkeypatch,
                                                                 lambda: strict_load(path))


def test_a_duplicate_key_is_reported_before_a_malformed_detection(tmp_path):
    results = valid_results(random.Random(2))
    results["v1"][0]["score"] = True
    path = tmp_path / "pred.json"
    path.write_text(dump(results).replace('"results": {', '"results": {"v3": [], ', 1))
    with pytest.raises(InputError, match="duplicate key 'v3'"):
        load_predictions(path)


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_load_predictions_of_every_mutation_is_the_strict_reading(tmp_path, monkeypatch, name):
    results = valid_results(random.Random(4))
    MUTATIONS[name](results)
    path = tmp_path / "pred.json"
    path.write_text(dump(results))
    assert outcome(lambda: load_predictions(path)) == one_by_one(monkeypatch,
                                                                 lambda: strict_load(path))


def refuse(*args, **kwargs):
    raise AssertionError("this reading should not be needed")


def test_a_plain_file_is_decoded_straight_into_records(tmp_path, monkeypatch):
    path = tmp_path / "pred.json"
    results = valid_results(random.Random(3), videos=20, per_video=50)
    results["v1"][0]["segment"] = [3, 40]  # integers are numbers too
    path.write_text(dump(results).replace('"score": ', '"score":\r\n ', 7))
    expected = outcome(lambda: strict_load(path))
    monkeypatch.setattr(predictions_module, "_columns_one_by_one", refuse)
    monkeypatch.setattr(JsonDocument, "fast", property(refuse))  # no untyped decode either
    monkeypatch.setattr(JsonDocument, "strict", refuse)
    assert outcome(lambda: load_predictions(path)) == expected


def test_other_keys_in_the_detections_need_no_strict_reading(tmp_path, monkeypatch):
    path = tmp_path / "pred.json"
    results = valid_results(random.Random(5), videos=10, per_video=20)
    for rows in results.values():
        for row in rows:
            row["extra"] = {"rank": 1, "note": "a: b"}
    path.write_text(dump(results))
    expected = outcome(lambda: strict_load(path))
    monkeypatch.setattr(JsonDocument, "strict", refuse)
    assert outcome(lambda: load_predictions(path)) == expected


def test_numbers_written_with_many_digits_are_read_bit_for_bit(tmp_path, monkeypatch):
    rng = random.Random(11)

    def number() -> str:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 25)))
        return f"{digits[0]}.{digits[1:] or '0'}e{rng.randrange(-20, 5)}"

    rows = []
    while len(rows) < 3000:
        start, end = sorted((number(), number()), key=float)
        if float(start) < float(end):
            rows.append(f'{{"segment": [{start}, {end}], "label": "x", "score": {number()}}}')
    path = tmp_path / "pred.json"
    path.write_text('{"results": {"v": [' + ", ".join(rows) + "]}}")
    strict = json.loads(path.read_text())["results"]["v"]
    monkeypatch.setattr(JsonDocument, "fast", property(refuse))  # the typed decode it is
    predictions = load_predictions(path)
    assert predictions.segments.tobytes() == np.array([d["segment"] for d in strict]).tobytes()
    assert predictions.scores.tobytes() == np.array([d["score"] for d in strict]).tobytes()


def test_segments_and_scores_are_float64_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.random((200, 3)) * 10.0 ** rng.integers(-5, 5, (200, 1))
    results = {"v": [{"segment": [float(a), float(a + b + 1e-9)], "label": "x", "score": float(s)}
                     for a, b, s in values]}
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"results": results}))
    predictions = load_predictions(path)
    assert predictions.segments.dtype == np.float64
    assert predictions.segments.tobytes() == np.array(
        [d["segment"] for d in results["v"]]).tobytes()
    assert predictions.scores.tobytes() == np.array([d["score"] for d in results["v"]]).tobytes()
