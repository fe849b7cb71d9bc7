"""Field types with their ranges and the section decorator shared by the configuration's
sections (:mod:`uniav.config.sections`, :mod:`uniav.config.datasets`)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import ConfigDict, Field

#: Task and experiment names: lower-case identifiers (they become file names and metric names).
NAME = r"^[a-z][a-z0-9_]*$"

PositiveInt, NonNegativeInt = Annotated[int, Field(ge=1)], Annotated[int, Field(ge=0)]
PositiveFloat, NonNegativeFloat = Annotated[float, Field(gt=0)], Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]          # [0, 1]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]      # (0, 1)
Threshold = Annotated[float, Field(gt=0, le=1)]         # (0, 1]
NonEmpty, TaskName = Annotated[str, Field(min_length=1)], Annotated[str, Field(pattern=NAME)]


def section(cls: type) -> type:
    """A frozen dataclass that rejects unknown keys when validated."""
    cls.__pydantic_config__ = ConfigDict(extra="forbid")
    return dataclasses.dataclass(frozen=True)(cls)
