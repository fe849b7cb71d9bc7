"""The fast JSON reader (``uniav.fileio.load_json_file`` through ``uniav.jsondoc.read_json_document``) gives
exactly what the strict reader gives - the same value, or the same error - on every input; and it
is really used for plain files (the results and ground-truth files ``uniav score`` reads)."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from uniav.errors import InputError
from uniav.fileio import load_json_file, parse_json_text
from uniav.jsondoc import JsonCensus, json_census, read_json_document


def strict_outcome(path: Path) -> tuple[str, str]:
    """The reference: what ``load_json_file`` did before the fast path (text read, strict parse)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return "error", f"file {path}: not valid JSON: {exc}"
    try:
        return "value", canonical(parse_json_text(text, file=path))
    except InputError as exc:
        return "error", str(exc)


def fast_outcome(path: Path) -> tuple[str, str]:
    try:
        return "value", canonical(load_json_file(path))
    except InputError as exc:
        return "error", str(exc)


def canonical(value) -> str:
    """A text telling int from float, -0.0 from 0.0, and keeping key order."""
    return json.dumps(value, allow_nan=True)


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8", "surrogatepass"))
    else:
        path.write_bytes(data)
    return path


CASES = {
    "plain": '{"results": {"v1": [{"segment": [1.5, 3], "label": "Dog", "score": 0.9}]}}',
    "duplicate top key": '{"a": 1, "b": 2, "a": 3}',
    "duplicate in a record": '{"r": [{"segment": [1, 2], "score": 0.1, "score": 0.2}]}',
    "duplicate in a later record": '[{"a": 1, "b": 2}, {"a": 1, "b": 2}, {"a": 1, "a": 2}]',
    "duplicate through an escape": '{"a": 1, "\\u0061": 2}',
    "colon in a key hides nothing": '{"a:": 1, "b": 2, "b": 3}',
    "escaped colon in a key": '{"a\\u003a": 1, "b": 2, "b": 3}',
    "escaped colon, no duplicate": '{"a\\u003A": "x:y", "b": "\\u003a"}',
    "escaped backslash before u003a": '{"x\\\\u003a": 1, "a": 2, "a": 3}',
    "escaped backslash, no duplicate": '{"x\\\\u003a": "::", "a": 2}',
    "colons everywhere, no duplicate": '{"a:b": {"c:": ["d:", "e:f:g"]}, "h": ":"}',
    "NaN": '{"score": NaN}',
    "Infinity": '[Infinity, -Infinity]',
    "huge float": '[1e400]',
    "big integer": '[123456789012345678901234567890]',
    "2**64": '[18446744073709551616]',
    "below -2**63": '[-9223372036854775809]',
    "u64 max": '[18446744073709551615]',
    "large float literal": '[1e19, 2.5e300]',
    "negative zero": '[-0, -0.0, 0.0]',
    "lone surrogate": '["\\ud800"]',
    "unicode": '{"Ł": "żółw", "clé": "\\u00e9"}',
    "BOM": "\ufeff{\"a\": 1}",
    "CRLF, malformed": '{\r\n"a": 1,\r\n"b": }\r\n',
    "CR, malformed": '{\r"a": 1,\r"b": }\r',
    "CRLF, valid": '{\r\n"a": 1,\r\n"b": [1,\r\n 2]\r\n}\r\n',
    "trailing comma": '[1, 2,]',
    "extra data": '[1] [2]',
    "empty": '',
    "control character": '["a\tb"]',
    "leading zero": '[01]',
    "nested 100": "[" * 100 + "]" * 100,
    "nested 101": "[" * 101 + "]" * 101,
    "nested 990": '{"a":' * 990 + "1" + "}" * 990,
    "nested 2000": "[" * 2000 + "]" * 2000,
    "nested 100000": "[" * 100_000 + "]" * 100_000,
    "scalar": '"just a string"',
    "empty objects": '[{}, {}, {"a": {}}]',
    "mixed records": '[{"a": 1}, {"b": 2}, {"a": 1, "b": 2}, {"b": 2, "a": 1}, 3, "x", null, true]',
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_reader_gives_the_strict_outcome(tmp_path, name):
    path = write(tmp_path, "case.json", CASES[name])
    assert fast_outcome(path) == strict_outcome(path)


@pytest.mark.parametrize("data", [b'{"a": "\xff"}', b'["\xed\xa0\x80"]', b"\xef\xbb",
                                  b'["\xc0\xaf"]', b'["\xe0\x80\xaf"]', b'["\xf4\x90\x80\x80"]',
                                  b'["\xc3"]'])
def test_invalid_utf8_gives_the_strict_error(tmp_path, data):
    path = write(tmp_path, "bad.json", data)
    assert fast_outcome(path) == strict_outcome(path)
    assert fast_outcome(path)[0] == "error"


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such thing") as excinfo:
        load_json_file(tmp_path / "missing.json", missing="no such thing")
    assert excinfo.value.file == str(tmp_path / "missing.json")
    with pytest.raises(InputError, match="cannot read the file"):
        load_json_file(tmp_path)


# ---- random documents --------------------------------------------------------------------------

KEYS = ["a", "b", "seg:ment", "label", "score", "\\u0061", "\\u003a", "x\\u003Ay", "\\\\u003a",
        "é", "\\u00e9", "k\\\"q"]


def random_number(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randrange(-10 ** 6, 10 ** 6))
    if kind == 1:
        return str(rng.choice([2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -(2 ** 63),
                               -(2 ** 63) - 1, 10 ** 25]))
    if kind == 2:
        return repr(rng.uniform(-1e3, 1e3))
    if kind == 3:  # many significant digits and an exponent: correct rounding matters
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 30)))
        return f"{rng.choice(['', '-'])}{digits[0]}.{digits[1:] or '0'}e{rng.randrange(-330, 330)}"
    if kind == 4:
        return repr(struct.unpack("<d", rng.randbytes(8))[0]).replace("inf", "1e999")
    if kind == 5:
        return rng.choice(["-0", "-0.0", "0.0", "1E2", "1e-400", "4.9e-324"])
    if kind == 6:
        return rng.choice(["NaN", "Infinity", "-Infinity", "1e400"])
    return str(rng.random())


def random_value(rng: random.Random, depth: int) -> str:
    kind = rng.randrange(10 if depth < 5 else 6)
    if kind < 3:
        return random_number(rng)
    if kind == 3:
        return '"' + rng.choice(KEYS + ["plain", "a:b", "::", ""]) + '"'
    if kind == 4:
        return rng.choice(["true", "false", "null"])
    if kind == 5:
        return "[]" if rng.random() < 0.5 else "{}"
    if kind < 8:
        return "[" + ", ".join(random_value(rng, depth + 1)
                               for _ in range(rng.randrange(1, 5))) + "]"
    size = rng.randrange(1, 5)
    keys = rng.sample(KEYS, size)
    if rng.random() < 0.15:  # a duplicate, sometimes spelled differently
        keys.append(rng.choice(keys))
    whitespace = rng.choice(["", " ", "\n", "\r\n", "\t"])
    return "{" + f",{whitespace}".join(f'"{key}":{whitespace}{random_value(rng, depth + 1)}'
                                      for key in keys) + "}"


def test_random_documents_give_the_strict_outcome(tmp_path):
    rng = random.Random(20260517)
    path = tmp_path / "random.json"
    seen = {"value": 0, "error": 0, "fast": 0}
    for _ in range(3000):
        text = random_value(rng, 0)
        if rng.random() < 0.05:  # break it somewhere
            cut = rng.randrange(len(text) + 1)
            text = text[:cut] + rng.choice(["", ",", "}", '"', ":"]) + text[cut + 1:]
        path.write_text(text, encoding="utf-8")
        outcome = fast_outcome(path)
        assert outcome == strict_outcome(path), text
        seen[outcome[0]] += 1
        document = read_json_document(path)
        seen["fast"] += document.parsed and document.faithful(json_census(document.value))
    assert min(seen.values()) > 300, seen  # values, errors and the fast path were exercised


def test_floats_are_read_bit_for_bit(tmp_path):
    rng = random.Random(7)
    numbers = [random_number(rng) for _ in range(20_000)]
    numbers = [n for n in numbers if n not in ("NaN", "Infinity", "-Infinity")
               and "e999" not in n and "e400" not in n]
    path = write(tmp_path, "numbers.json", "[" + ", ".join(numbers) + "]")
    document = read_json_document(path)
    expected = [json.loads(n) for n in numbers]
    if document.parsed and document.faithful(json_census(document.value)):
        assert [struct.pack("<d", v) if isinstance(v, float) else v for v in document.value] == \
            [struct.pack("<d", v) if isinstance(v, float) else v for v in expected]
    assert canonical(load_json_file(path)) == canonical(expected)


# ---- the fast path is taken where it should be ---------------------------------------------------

def test_plain_files_take_the_fast_path(tmp_path):
    results = {f"video:{v}": [{"segment": [0.5 * i, 0.5 * i + 3], "label": f"class {i % 3}",
                               "score": 1 / (i + 1)} for i in range(20)] for v in range(30)}
    path = write(tmp_path, "pred.json", json.dumps({"version": "x", "results": results}))
    document = read_json_document(path)
    census = json_census(document.value)
    assert document.parsed and document.faithful(census)
    assert census == JsonCensus(pairs=2 + 30 + 30 * 20 * 3, colons=30, depth=6,
                                large_float=False)
    assert load_json_file(path) == json.loads(path.read_text())


def test_census_counts_what_the_file_holds():
    value = json.loads('{"a:b": [{"x": "1:2:3", "y": [1.5, {"z": null}]}, {"x": "", "y": []}],'
                       ' "c": 1e19}')
    assert json_census(value) == JsonCensus(pairs=2 + 2 + 2 + 1, colons=1 + 2, depth=6,
                                            large_float=True)


def test_a_census_that_falls_short_sends_the_file_to_the_strict_reader(tmp_path):
    path = write(tmp_path, "a.json", '{"a": 1, "b": 2}')
    document = read_json_document(path)
    assert document.faithful(JsonCensus(pairs=2, depth=1))
    assert not document.faithful(JsonCensus(pairs=1, depth=1))
    assert not document.faithful(JsonCensus(pairs=2, depth=1, large_float=True))
    assert document.strict() == {"a": 1, "b": 2}
