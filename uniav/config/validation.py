"""Validation of plain data against the sections, with errors that name the key path.

:func:`parse` validates strictly (``params.yaml``, weights metadata: a value must already have
its type - an integer is not accepted as a boolean, nor ``"3"`` as a number) and :func:`coerce`
leniently (command-line strings: ``"3"`` → 3, ``"false"`` → False, ``"null"`` → None where the
key allows null).  Both use pydantic on the dataclasses of :mod:`uniav.config.sections`, whose
JSON schema (:func:`json_schema`) the Snakefile validates with.  Every failure is a
:class:`~uniav.errors.ConfigError` such as::

    train.lr.tal: expected a number, got 'fast'
    train.val_every_epochs: must be >= 1, got 0
    eval.nms: expected one of 'soft', 'hard', 'none', got 'fancy'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict, is_typeddict

from uniav.errors import ConfigError

T = TypeVar("T")

#: Strings a command line uses for null.
NULL_WORDS = frozenset({"null", "Null", "NULL", "~", "None", "none"})


@functools.lru_cache(maxsize=None)
def adapter(tp: Any) -> TypeAdapter:
    """The (cached) pydantic adapter of a type."""
    return TypeAdapter(tp)


def parse(tp: type[T], data: Any, path: str = "") -> T:
    """Validate plain data (as read from YAML or JSON) strictly into ``tp``.

    Args:
        tp: a section dataclass (or any type built from them).
        data: the plain data.
        path: the key path of ``data`` in the configuration (prefix of error messages).

    Raises:
        ConfigError: naming the key path of the first problem found.
    """
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or '<top level>'}: not plain data ({exc})") from None
    try:
        return adapter(tp).validate_json(text, strict=True)
    except ValidationError as exc:
        raise ConfigError(describe(exc, data, path, tp)) from None


def coerce(tp: Any, data: Any, path: str = "") -> Any:
    """Validate command-line values leniently: strings become the numbers, booleans or null the
    configuration expects there (never where it expects a string).

    Args:
        tp: the expected type (for partial overrides, a ``partial_type``).
        data: plain data whose leaves may be strings.
        path: key path prefix of error messages.

    Returns:
        The data with converted leaves (plain data, not dataclasses).

    Raises:
        ConfigError: a value that does not convert, naming its key path.
    """
    data = _nulls_where_allowed(tp, data)
    try:
        value = adapter(tp).validate_python(data, strict=False)
    except ValidationError as exc:
        raise ConfigError(describe(exc, data, path, tp)) from None
    return _plain(value)


def json_schema(tp: Any, title: str, description: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``tp``, as pydantic derives it from the sections."""
    schema = adapter(tp).json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "description": description, **{k: v for k, v in schema.items() if k != "title"}}


@functools.lru_cache(maxsize=None)
def partial_type(tp: Any, exclude: tuple[str, ...] = ()) -> Any:
    """The "partial" form of a section: a ``TypedDict`` with every key optional, nested sections
    partial too (mappings of sections map to partial sections; lists stay whole, as a list in
    an override replaces the list).  Validates overrides (experiments, overlays) with the same
    types and ranges as the full section, and yields their JSON schema."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        keys = {f.name: partial_type(hints[f.name]) for f in dataclasses.fields(tp)
                if f.name not in exclude}
        partial = TypedDict(f"Partial{tp.__name__}", keys, total=False)  # type: ignore[misc]
        partial.__pydantic_config__ = ConfigDict(extra="forbid")
        partial.__doc__ = f"Any subset of the keys of {tp.__name__}."
        return partial
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return Annotated[(partial_type(args[0]), *tp.__metadata__)]
    if origin is dict:
        return dict[args[0], partial_type(args[1])]  # type: ignore[valid-type]
    return tp


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "expected an integer", "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list", "tuple_type": "expected a list",
    "dict_type": "expected a mapping", "dataclass_type": "expected a mapping",
    "model_type": "expected a mapping", "typed_dict_type": "expected a mapping",
    "none_required": "expected null",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
           "less_than": "<"}


def describe(exc: ValidationError, data: Any, path: str, tp: Any) -> str:
    """The first error of a pydantic ``ValidationError`` as ``key.path: what is wrong, got X``."""
    error = exc.errors(include_url=False)[0]
    loc = [part for part in error["loc"]]
    where = _join(path, loc)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"{where}: missing required value"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _keys_at(tp, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key{hint}"
    if kind == "literal_error":
        return f"{where}: expected one of {_literal_choices(tp, loc)}, got {_show(value)}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{where}: must be {_BOUNDS[kind]} {bound:g}, got {_show(value)}"
    if kind in ("too_short", "too_long"):
        return (f"{where}: expected {ctx.get('min_length', ctx.get('max_length'))} item(s) "
                f"{'at least' if kind == 'too_short' else 'at most'}, got {ctx.get('actual_length')}")
    if kind == "string_too_short":
        return f"{where}: must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{where}: {_show(value)} does not match the pattern {ctx.get('pattern')}"
    if kind in _EXPECTED:
        return f"{where}: {_EXPECTED[kind]}, got {_show(value)}"
    return f"{where}: {error['msg'].lower()}, got {_show(value)}"


def _join(path: str, loc: list[Any]) -> str:
    text = path
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text or "<top level>"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_at(tp: Any, loc: list[Any]) -> Any:
    """The type expected at a location below ``tp`` (None when it cannot be followed)."""
    for part in loc:
        tp = _strip(tp)
        if dataclasses.is_dataclass(tp) or is_typeddict(tp):
            tp = typing.get_type_hints(tp, include_extras=True).get(part)
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) in (list, tuple):
            args = typing.get_args(tp)
            tp = args[part] if typing.get_origin(tp) is tuple and isinstance(part, int) \
                and part < len(args) and args[-1] is not Ellipsis else args[0]
        else:
            return None
        if tp is None:
            return None
    return tp


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` → X; ``X | None`` → X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _keys_at(tp: Any, loc: list[Any]) -> list[str]:
    target = _strip(_type_at(tp, loc))
    if dataclasses.is_dataclass(target):
        return [f.name for f in dataclasses.fields(target)]
    if is_typeddict(target):
        return list(typing.get_type_hints(target))
    return []


def _literal_choices(tp: Any, loc: list[Any]) -> str:
    target = _type_at(tp, loc)
    if typing.get_origin(target) is dict:   # a mapping key that must be one of a Literal
        target = typing.get_args(target)[0]
    target = _strip(target)
    if typing.get_origin(target) is Literal:
        return ", ".join(repr(choice) for choice in typing.get_args(target))
    return "the allowed values"


# --------------------------------------------------------------------------------------------
# Lenient conversion helpers
# --------------------------------------------------------------------------------------------

def _allows_none(tp: Any) -> bool:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return type(None) in typing.get_args(tp) or tp is type(None) or tp is Any


def _nulls_where_allowed(tp: Any, data: Any) -> Any:
    """Replace null words by None where the type allows None (before lenient validation)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            sub = _type_at(tp, [key])
            out[key] = None if (isinstance(value, str) and value in NULL_WORDS and sub is not None
                                and _allows_none(sub)) else _nulls_where_allowed(sub, value)
        return out
    if isinstance(data, list):
        return [_nulls_where_allowed(_type_at(tp, [i]), item) for i, item in enumerate(data)]
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
