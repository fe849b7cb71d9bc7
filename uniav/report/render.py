"""Rendering a :class:`~uniav.report.table_data.Table` with pandas: Markdown, CSV and LaTeX.

One :class:`pandas.DataFrame` of percentages per table (:func:`percent_frame`; NaN: missing);
each format only chooses headers and how a number and a missing value are written:

* Markdown (``DataFrame.to_markdown``, via tabulate): heading, caption, a flat header
  (``TAL 0.5`` ...), two decimals, ``–`` when missing; then the experiments of each row and the
  notes.
* CSV (``DataFrame.to_csv``): ``label``, one column per value (two decimals, empty when
  missing), ``source`` and ``experiments``; the caption and notes go to the CSVW sidecar
  ``<name>.csv-metadata.json`` (:func:`render_csv_metadata`), so the CSV itself stays plain.
* LaTeX (``Styler.to_latex``, via jinja2): a booktabs ``table`` with one column group per task,
  ``\\cmidrule`` under each group and a ``\\midrule`` before published rows (needs
  ``\\usepackage{booktabs}``).

With several seeds (``Table.seeds``) a measured cell is the mean over the seeds and its sample
standard deviation: ``12.34 ± 0.56`` in Markdown, ``12.34 $\\pm$ 0.56`` in LaTeX, and in the CSV
the mean in the value column followed by a ``<column> std`` column (empty for published rows).
With one seed the output is exactly that of a single run.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from uniav.report.table_data import MISSING, Column, ExtraColumn, Row, Table, group_header


def format_percent(value: float | None, decimals: int = 2) -> str:
    """A fraction as a percentage with ``decimals`` decimals, or ``–`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{100.0 * value:.{decimals}f}"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "→": r"$\rightarrow$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text (captions and notes, which the Styler
    does not escape)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def percent_frame(table: Table) -> pd.DataFrame:
    """The values of ``table`` in percent (float64; NaN when missing), one row per table row,
    one column per table column (labelled by position; each renderer names them)."""
    data = [[math.nan if (v := row.values.get(c)) is None else 100.0 * v for c in table.columns]
            for row in table.rows]
    return pd.DataFrame(data, columns=range(len(table.columns)), dtype="float64")


def spread_cell(value: float | None, std: float | None, plus_minus: str, missing: str) -> str:
    """``mean<plus_minus>std`` in percent with two decimals (the mean alone without a std,
    ``missing`` without a mean)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    text = f"{100.0 * value:.2f}"
    return text if std is None else f"{text}{plus_minus}{100.0 * std:.2f}"


def spread_frame(table: Table, plus_minus: str, missing: str) -> pd.DataFrame:
    """The cells of a several-seed table as text (:func:`spread_cell`), labelled by position."""
    data = [[spread_cell(row.values.get(c), row.spread.get(c), plus_minus, missing)
             for c in table.columns] for row in table.rows]
    return pd.DataFrame(data, columns=range(len(table.columns)), dtype="object")


def _markdown_header(column: object) -> str:
    """``TAL 0.5`` / ``SED avg``; ``SED seen`` / ``SED AVEL names`` (GroupColumn); the SED
    extras without the task (``PSDS1``)."""
    if isinstance(column, ExtraColumn):
        return column.threshold_text
    return f"{group_header(column.task)} {column.threshold_text}"  # type: ignore[attr-defined]


def render_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: heading, caption, one header row, one row per table row."""
    headers = ["Method", *(_markdown_header(c) for c in table.columns)]
    if table.seeds:
        frame = spread_frame(table, " ± ", MISSING)
    else:
        frame = percent_frame(table).astype(object)
        frame = frame.where(frame.notna(), None)  # tabulate writes missingval for None only
    frame.insert(0, "label", [row.label.replace("|", "\\|") for row in table.rows])
    frame.columns = headers
    if not table.rows:
        frame.loc[0] = ["(no rows configured)", *[""] * len(table.columns)]
    # the label column is text even when it looks like a number (disable_numparse=[0])
    grid = frame.to_markdown(index=False, tablefmt="pipe", floatfmt=".2f", missingval=MISSING,
                             disable_numparse=True if table.seeds else [0],
                             colalign=["left", *["right"] * len(table.columns)])
    lines = [f"## {table.title}", "", table.caption, "", grid, ""]
    sources = [f"{row.label}: " + ", ".join(f"{group_header(t)} from `{e}`"
                                            for t, e in row.experiments.items())
               for row in table.rows if row.experiments]
    if sources:
        lines += ["Experiments: " + "; ".join(sources) + ".", ""]
    for note in table.notes:
        lines += [note, ""]
    return "\n".join(lines)


def render_csv(table: Table) -> str:
    """CSV: ``label``, one column per value (percent, two decimals; empty when missing),
    ``source`` (measured / published) and ``experiments`` (``task=experiment;...``); with
    several seeds a ``<column> std`` column (percent) after each value column."""
    frame = percent_frame(table)
    frame.columns = [c.csv_header for c in table.columns]
    if table.seeds:
        for i, column in reversed(list(enumerate(table.columns))):
            frame.insert(i + 1, f"{column.csv_header} std",
                         [math.nan if (v := row.spread.get(column)) is None else 100.0 * v
                          for row in table.rows])
    frame.insert(0, "label", [row.label for row in table.rows])
    frame["source"] = [row.source for row in table.rows]
    frame["experiments"] = [_experiments_cell(row) for row in table.rows]
    return frame.to_csv(index=False, float_format="%.2f", na_rep="", lineterminator="\n")


def _experiments_cell(row: Row) -> str:
    return ";".join(f"{t}={e}" for t, e in row.experiments.items())


def render_csv_metadata(table: Table, csv_name: str) -> str:
    """The CSVW sidecar of ``<name>.csv`` (W3C "Metadata Vocabulary for Tabular Data", found by
    its name ``<name>.csv-metadata.json``): title, caption (with the protocol) and notes."""
    metadata = {"@context": "http://www.w3.org/ns/csvw", "url": csv_name,
                "dc:title": table.title, "dc:description": table.caption}
    if table.notes:
        metadata["rdfs:comment"] = list(table.notes)
    return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"


def _latex_groups(table: Table) -> list[str]:
    """The column group of each column: the task's title (``SED extras`` for those)."""
    return [f"{group_header(c.task)} extras" if isinstance(c, ExtraColumn) else group_header(c.task)
            for c in table.columns]


def render_latex(table: Table) -> str:
    """A booktabs ``table`` with one column group per task (needs ``\\usepackage{booktabs}``)."""
    groups = _latex_groups(table)
    widths: list[tuple[str, int]] = []
    for title in groups:
        if widths and widths[-1][0] == title:
            widths[-1] = (title, widths[-1][1] + 1)
        else:
            widths.append((title, 1))
    # a task's average is "Avg"; ExtraColumn and GroupColumn show their own header
    subs = ["Avg" if isinstance(c, Column) and c.threshold is None else c.threshold_text
            for c in table.columns]
    if table.seeds:  # text cells with $\pm$: the labels are escaped here, the cells not at all
        frame = spread_frame(table, r" $\pm$ ", "--")
        labels = [latex_escape(row.label) for row in table.rows]
    else:
        frame, labels = percent_frame(table), [row.label for row in table.rows]
    frame.columns = pd.MultiIndex.from_arrays([groups, subs])
    frame.insert(0, ("", "Method"), labels)
    styler = (frame.style.hide(axis="index")
              .format(precision=2, na_rep="--", escape=None if table.seeds else "latex")
              .format_index(escape="latex", axis=1)
              .set_table_styles([{"selector": "small", "props": ":;"}]))
    latex = styler.to_latex(
        environment="table", position="t", position_float="centering", hrules=True,
        caption=latex_escape(table.caption), label=f"tab:{table.name}", multicol_align="c",
        column_format="l" + "".join(" " + "c" * width for _, width in widths))
    lines = latex.rstrip("\n").split("\n")
    # booktabs touches the Styler has no option for: a \cmidrule under each column group, and a
    # \midrule between the measured and the published rows.
    top = lines.index(r"\toprule")
    start, rules = 2, []
    for _, width in widths:
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines.insert(top + 2, " ".join(rules))
    body = lines.index(r"\midrule", top) + 1
    measured = sum(1 for row in table.rows if row.source != "published")
    if 0 < measured < len(table.rows):
        lines.insert(body + measured, r"\midrule")
    end = lines.index(r"\end{tabular}") + 1
    lines[end:end] = [rf"\par\smallskip\footnotesize {latex_escape(note)}" for note in table.notes]
    return "\n".join(["% Generated by `uniav tables` from the metrics JSON files; do not edit.",
                      *lines]) + "\n"
