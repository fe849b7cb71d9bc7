"""Fast strict JSON: a C decoder (``msgspec``) whose result is kept only when proven equal to
the strict reader's (:func:`uniav.fileio.parse_json_text`: no key given twice, no integer beyond
64 bits, nothing nested absurdly deep); otherwise the strict reader decides.  Used by
:func:`uniav.fileio.load_json_file` and the results-file reader of ``uniav score``
(docs/evaluation.md, "Reading results files").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any

from uniav.fileio import parse_json_text

#: Nesting the fast path leaves to the strict reader (both stop at the interpreter's recursion
#: limit, at slightly different depths); nothing this project reads nests more than a few levels.
FAST_JSON_MAX_DEPTH = 100

#: Floats of this magnitude may be integers beyond 64 bits that a typed decode read as floats
#: (the standard library reads them as exact integers).
FAST_JSON_LARGE = 2.0 ** 63


@dataclass(frozen=True)
class JsonCensus:
    """What a parsed JSON value holds, as :meth:`JsonDocument.faithful` needs it.

    Attributes:
        pairs: key-value pairs of all its objects (a lower bound is allowed).
        colons: ``:`` characters in all its strings, keys included (a lower bound is allowed).
        depth: nesting depth, scalars included (a bare number has depth 1, ``[1]`` depth 2).
        large_float: a float of magnitude ``>= 2**63`` is present.
    """

    pairs: int = 0
    colons: int = 0
    depth: int = 0
    large_float: bool = False

    def __add__(self, other: "JsonCensus") -> "JsonCensus":
        return JsonCensus(self.pairs + other.pairs, self.colons + other.colons,
                          max(self.depth, other.depth), self.large_float or other.large_float)


def json_census(value: Any) -> JsonCensus:
    """The :class:`JsonCensus` of a parsed JSON value (exact).

    Walks the value level by level, a column of like values at a time (the ``segment`` of every
    detection, then their numbers, ...), so C loops do the work for files of many similar records.
    """
    pairs = colons = depth = 0
    large_float = False
    columns: list[tuple[list[Any], int]] = [([value], 1)]
    while columns:
        column, level = columns.pop()
        depth = max(depth, level)
        types = set(map(type, column))
        for kind in types:
            values = column if len(types) == 1 else [v for v in column if type(v) is kind]
            if kind is str:
                colons += "".join(values).count(":")
            elif kind is float:
                large_float = large_float or (max(values) >= FAST_JSON_LARGE
                                              or min(values) <= -FAST_JSON_LARGE)
            elif kind is list:
                columns.append((list(chain.from_iterable(values)), level + 1))
            elif kind is dict:
                keys = list(chain.from_iterable(values))
                pairs += len(keys)
                items = list(chain.from_iterable(map(dict.values, values)))
                first = list(values[0])
                if (0 < len(first) < len(values) and len(keys) == len(first) * len(values)
                        and keys == first * len(values)):  # many records, same keys: by column
                    colons += "".join(first).count(":") * len(values)
                    columns.extend((items[i::len(first)], level + 1) for i in range(len(first)))
                else:
                    colons += "".join(keys).count(":")
                    columns.append((items, level + 1))
    return JsonCensus(pairs, colons, depth, large_float)


def decode_json_fast(data: bytes | memoryview | Any, kind: Any = Any) -> tuple[bool, Any]:
    """Decode JSON with the fast C decoder (``msgspec``), untyped or straight into ``kind``.

    ``kind`` is any type msgspec decodes into (``dict[str, list[SomeStruct]]``, ``msgspec.Raw``,
    ...; ``Any``: plain Python values).  The decoder is strict JSON (no NaN, no lone surrogates,
    valid UTF-8) but keeps the last value of a repeated key, and a typed decode turns integers
    into floats for float fields - so a result is only as good as what
    :meth:`JsonDocument.faithful` proves about it.

    Returns:
        ``(True, value)``, or ``(False, None)`` when msgspec is not installed or the data is not
        strict JSON of that kind (syntax, types, missing fields, too deep, ...).
    """
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is a dependency; the strict reader suffices
        return False, None
    try:
        return True, msgspec.json.decode(data, type=kind)
    except (ValueError, RecursionError):  # msgspec.DecodeError and ValidationError are ValueErrors
        return False, None


@dataclass(frozen=True)
class JsonDocument:
    """A JSON file read once; parsed by the fast decoder (:func:`decode_json_fast`) on demand.

    The fast decoder keeps the last value of a repeated key; its result is used only when
    :meth:`faithful` proves it is what the strict reader gives, else :meth:`strict` decides
    (result or error).  :func:`load_json_file` does this for any file; a reader that decodes or
    validates records anyway can build the :class:`JsonCensus` from them for less.

    Attributes:
        file: the file (named in errors).
        raw: its bytes.
    """

    file: Path
    raw: bytes = field(repr=False)

    @cached_property
    def fast(self) -> tuple[bool, Any]:
        """``(parsed, value)``: the fast decoder's plain Python value, or ``(False, None)`` when
        it refuses the text (not strict JSON - NaN, lone surrogates, a BOM, bad UTF-8, ... - or
        too deep), which the strict reader then decides."""
        return decode_json_fast(self.raw)

    @property
    def parsed(self) -> bool:
        """Whether the fast decoder took the text."""
        return self.fast[0]

    @property
    def value(self) -> Any:
        """The fast decoder's result (None when not :attr:`parsed`)."""
        return self.fast[1]

    def faithful(self, census: JsonCensus) -> bool:
        """Whether a fast decode of this text, of which ``census`` is the census, is the strict
        reader's result.

        Proof: a ``:`` byte of the text is a key-value separator or lies in a string (UTF-8
        multi-byte sequences never contain it); a string's decoded ``:`` are its literal ones
        plus its ``\\u003a``/``\\u003A`` escapes, so the text has at most
        ``count(":") - (census.colons - escapes)`` separators, i.e. key-value pairs.  The decoded
        objects hold exactly that many pairs unless a key repeats (the repetitions collapse) or a
        key was skipped; ``census.pairs`` counts at most what they hold.  So equality means that
        no key repeats and nothing was left out.  With no large float and shallow nesting the two
        readers agree on everything else (both parse floats correctly rounded; the fast one
        refuses NaN, infinities, lone surrogates and bad UTF-8).
        """
        if census.large_float or census.depth > FAST_JSON_MAX_DEPTH:
            return False
        separators = self.raw.count(b":")
        if census.colons:
            escapes = self.raw.count(b"\\u003a") + self.raw.count(b"\\u003A")
            separators -= max(0, census.colons - escapes)
        return separators == census.pairs

    def strict(self) -> Any:
        """The strict reader's result (:func:`parse_json_text`), or its error."""
        from uniav.errors import InputError

        try:
            text = self.raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid JSON: {exc}", file=self.file) from None
        # as a text-mode read would give it (universal newlines), so error positions match
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return parse_json_text(text, file=self.file)


def read_json_document(path: str | Path, *, missing: str = "file not found") -> JsonDocument:
    """Read a JSON file that must exist (nothing is parsed yet).

    Raises:
        InputError: naming the file when it is missing or cannot be read.
    """
    from uniav.errors import InputError

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(missing, file=path) from None
    except OSError as exc:  # a directory, no permission, ...
        raise InputError(f"cannot read the file ({exc.strerror or exc})", file=path) from None
    return JsonDocument(path, raw)
