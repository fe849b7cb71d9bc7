"""Published numbers of a cited source, shown below the measured rows of the main and ablation
tables (``tables.published``, paper benchmark only; files under ``workflow/published/``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


from uniav.errors import InputError
from uniav.fileio import load_yaml_file
from uniav.report.metrics import TOLERANCE
from uniav.report.table_data import MISSING, Column, Row, Table


@dataclass
class Published:
    """Published numbers of a cited source (see ``workflow/published/``).

    File layout (YAML)::

        source:
          citation: "T. Geng et al., ... arXiv:2404.03179"
          url: https://arxiv.org/abs/2404.03179
          location: "Table 2"          # where in the source
          transcribed_by: "..."         # who copied the numbers, and from which version
        unit: percent                   # values as printed in the paper
        tables:
          main:
            - label: "UniAV"
              values:
                tal: {0.5: 12.3, 0.75: ..., 0.95: ..., avg: ...}
                sed: {...}
          ablation: [...]

    A ``null`` value means "not transcribed" and is shown as missing.
    """

    path: Path
    citation: str
    url: str
    location: str
    tables: dict[str, list[dict[str, Any]]]

    def extend(self, table: Table) -> None:
        """Append this source's rows of ``table.name`` (matching its columns) and a citation note."""
        entries = self.tables.get(table.name) or []
        if not entries:
            return
        for entry in entries:
            values: dict[Column, float | None] = {}
            for column in table.columns:
                task_values = entry["values"].get(column.task) or {}
                values[column] = _published_value(task_values, column.threshold)
            table.rows.append(Row(f"{entry['label']} (published)", values, "published"))
        missing = sum(v is None for row in table.rows if row.source == "published"
                      for v in row.values.values())
        note = f"Published: {self.citation}"
        if self.location:
            note += f", {self.location}"
        if self.url:
            note += f" ({self.url})"
        note += f"; transcribed in {self.path}."
        if missing:
            note += (f" {missing} published value(s) are not transcribed yet and are shown as "
                     f"{MISSING}.")
        table.notes.append(note)


def _published_value(task_values: dict[Any, Any], threshold: float | None) -> float | None:
    """A published percentage as a fraction, or ``None`` when not given."""
    for key, value in task_values.items():
        if threshold is None:
            matches = str(key) == "avg"
        else:
            try:
                matches = str(key) != "avg" and abs(float(key) - threshold) < TOLERANCE
            except ValueError:
                matches = False
        if matches:
            return None if value is None else float(value) / 100.0
    return None


def load_published(path: str | Path) -> Published:
    """Read and validate a published-numbers file (layout in :class:`Published`).

    Raises:
        InputError: naming the file and field on any problem.
    """
    path = Path(path)
    data = load_yaml_file(path, missing="published-numbers file not found (tables.published)",
                          error=lambda message: InputError(message, file=path))
    if not isinstance(data, dict):
        raise InputError("expected a mapping", file=path)
    unknown = set(data) - {"source", "unit", "tables"}
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", file=path)
    source = data.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("citation"), str):
        raise InputError("source.citation is required (a string)", file=path, field="source")
    if data.get("unit", "percent") != "percent":
        raise InputError("only unit: percent is supported", file=path, field="unit")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise InputError("expected a mapping of table name to rows", file=path, field="tables")
    for name, entries in tables.items():
        if not isinstance(entries, list):
            raise InputError("expected a list of rows", file=path, field=f"tables.{name}")
        for i, entry in enumerate(entries):
            where = f"tables.{name}[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) \
                    or not isinstance(entry.get("values"), dict):
                raise InputError("each row needs 'label' (string) and 'values' (mapping)",
                                 file=path, field=where)
            for task, task_values in entry["values"].items():
                if not isinstance(task_values, dict):
                    raise InputError("expected a mapping of threshold (or avg) to value",
                                     file=path, field=f"{where}.values.{task}")
                for key, value in task_values.items():
                    if value is not None and (isinstance(value, bool)
                                              or not isinstance(value, (int, float))):
                        raise InputError(f"expected a number or null, got {value!r}", file=path,
                                         field=f"{where}.values.{task}.{key}")
    return Published(path=path, citation=source["citation"], url=str(source.get("url") or ""),
                     location=str(source.get("location") or ""), tables=tables)
