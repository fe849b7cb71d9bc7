"""`uniav tables` on hand-written metrics files: exact cells, layout, published rows, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from uniav.config import config_from_dict
from uniav.errors import ConfigError, InputError
from uniav.report.tables import (build_tables, describe_protocol, display_thresholds,
                                   format_percent, latex_escape, load_published, write_summary,
                                   write_tables)

REPO_ROOT = Path(__file__).resolve().parents[2]
TAL_T = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
SED_T = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _raw(benchmark: str = "synthetic", published: str | None = None) -> dict:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["benchmarks"].pop("synthetic")   # its experiments and tables: test_beyond_main_tables
    raw["benchmark"] = benchmark
    raw["experiments"] = {
        "single_tal": {"tasks": ["tal"]}, "single_sed": {"tasks": ["sed"]},
        "single_avel": {"tasks": ["avel"]}, "uniav": {"tasks": ["tal", "sed", "avel"]},
        "no_experts": {"tasks": ["tal", "sed", "avel"], "model": {"task_experts": False}}}
    raw["tables"] = {
        "main": [{"label": "Single-task", "experiments": ["single_tal", "single_sed", "single_avel"]},
                 {"label": "UniAV", "experiments": ["uniav"]}],
        "ablation": [{"label": "w/o experts & co_1", "experiments": ["no_experts"]},
                     {"label": "UniAV", "experiments": ["uniav"]}],
        "published": published}
    return raw


def _config(benchmark: str = "synthetic", published: str | None = None, **changes):
    return config_from_dict({**_raw(benchmark, published), **changes})


def _task(thresholds, base, sed=None):
    """mAP at threshold i = base - i/100; average = their mean."""
    values = [round(base - i / 100, 6) for i in range(len(thresholds))]
    data = {"thresholds": thresholds, "mAP": values, "average_mAP": sum(values) / len(values),
            "per_class": {"A": values, "B": values}}
    if sed is not None:
        data["sed"] = sed
    return data


SED_EXTRAS_SINGLE = {"psds1": 0.31234, "psds2": 0.5, "collar_f1_macro": 0.4449}
SED_EXTRAS_UNIAV = {"psds1": 0.41, "psds2": 0.6234, "collar_f1_macro": 0.5}


def _write_metrics(directory: Path) -> None:
    metrics = {
        "single_tal": {"tal": _task(TAL_T, 0.50)},
        "single_sed": {"sed": _task(SED_T, 0.60, SED_EXTRAS_SINGLE)},
        "single_avel": {"avel": _task(SED_T, 0.70)},
        "uniav": {"tal": _task(TAL_T, 0.55), "sed": _task(SED_T, 0.65, SED_EXTRAS_UNIAV),
                  "avel": _task(SED_T, 0.75)},
        "no_experts": {"tal": _task(TAL_T, 0.40), "sed": _task(SED_T, 0.45, {}),
                       "avel": _task(SED_T, 0.42)}}
    directory.mkdir(parents=True, exist_ok=True)
    for name, tasks in metrics.items():
        (directory / f"{name}.json").write_text(json.dumps(
            {"experiment": name, "split": "test", "tasks": tasks}))


@pytest.fixture
def written(tmp_path: Path) -> Path:
    _write_metrics(tmp_path / "metrics")
    paths = write_tables(_config(), tmp_path / "metrics", tmp_path / "tables")
    assert sorted(p.name for p in paths) == sorted(
        f"{name}.{suffix}" for name in ("main", "ablation", "sed_extras")
        for suffix in ("md", "csv", "csv-metadata.json", "tex"))
    return tmp_path / "tables"


def _markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_main_markdown_exact_cells(written: Path) -> None:
    text = (written / "main.md").read_text()
    rows = _markdown_rows(text)
    assert rows[0] == ["Method", "TAL 0.5", "TAL 0.75", "TAL 0.95", "TAL avg",
                       "SED 0.5", "SED 0.7", "SED 0.9", "SED avg",
                       "AVEL 0.5", "AVEL 0.7", "AVEL 0.9", "AVEL avg"]
    # TAL: base 0.50 -> 0.5: 50.00, 0.75 (index 5): 45.00, 0.95 (index 9): 41.00, avg 45.50
    # SED: base 0.60 -> 0.5 (index 4): 56.00, 0.7: 54.00, 0.9: 52.00, avg 56.00
    # AVEL: base 0.70 -> 66.00, 64.00, 62.00, avg 66.00
    assert rows[2] == ["Single-task", "50.00", "45.00", "41.00", "45.50",
                       "56.00", "54.00", "52.00", "56.00", "66.00", "64.00", "62.00", "66.00"]
    assert rows[3] == ["UniAV", "55.00", "50.00", "46.00", "50.50",
                       "61.00", "59.00", "57.00", "61.00", "71.00", "69.00", "67.00", "71.00"]
    assert len(rows) == 4
    assert "Benchmark: synthetic" in text and "Split: test" in text
    assert "TAL 0.50:0.05:0.95" in text and "SED 0.1:0.1:0.9" in text
    assert "SED from `single_sed`" in text


def test_main_csv_has_every_paper_threshold(written: Path) -> None:
    rows = list(csv.reader(io.StringIO((written / "main.csv").read_text())))
    header = rows[0]
    assert header[:5] == ["label", "tal mAP@0.5", "tal mAP@0.75", "tal mAP@0.95", "tal avg mAP"]
    assert header[5:15] == [f"sed mAP@{t:g}" for t in SED_T] + ["sed avg mAP"]
    assert header[15:25] == [f"avel mAP@{t:g}" for t in SED_T] + ["avel avg mAP"]
    assert header[25:] == ["source", "experiments"]
    single = dict(zip(header, rows[1]))
    assert single["sed mAP@0.1"] == "60.00" and single["sed mAP@0.9"] == "52.00"
    assert single["experiments"] == "tal=single_tal;sed=single_sed;avel=single_avel"
    assert single["source"] == "measured"
    uniav = dict(zip(header, rows[2]))
    assert uniav["avel mAP@0.3"] == "73.00" and uniav["tal avg mAP"] == "50.50"


def test_main_latex_structure(written: Path) -> None:
    tex = (written / "main.tex").read_text()
    assert r"\begin{tabular}{l cccc cccccccccc cccccccccc}" in tex
    assert r"\multicolumn{4}{c}{TAL} & \multicolumn{10}{c}{SED} & \multicolumn{10}{c}{AVEL} \\" in tex
    assert ("Single-task & 50.00 & 45.00 & 41.00 & 45.50 & 60.00 & 59.00 & 58.00 & 57.00 & 56.00 "
            "& 55.00 & 54.00 & 53.00 & 52.00 & 56.00 & ") in tex
    assert r"\label{tab:main}" in tex and r"mAP (\%)" in tex


def test_ablation_rows_and_latex_escaping(written: Path) -> None:
    rows = _markdown_rows((written / "ablation.md").read_text())
    assert [row[0] for row in rows[2:]] == ["w/o experts & co_1", "UniAV"]
    assert rows[2][1:5] == ["40.00", "35.00", "31.00", "35.50"]
    tex = (written / "ablation.tex").read_text()
    assert r"w/o experts \& co\_1 & 40.00" in tex


def test_sed_extras_table(written: Path) -> None:
    rows = _markdown_rows((written / "sed_extras.md").read_text())
    assert rows[0] == ["Method", "PSDS1", "PSDS2", "Collar F1 (macro)", "SED avg"]
    # one row per distinct SED experiment: main rows, then ablation rows not seen yet
    assert rows[2] == ["Single-task", "31.23", "50.00", "44.49", "56.00"]
    assert rows[3] == ["UniAV", "41.00", "62.34", "50.00", "61.00"]
    assert rows[4] == ["w/o experts & co_1", "–", "–", "–", "41.00"]
    assert len(rows) == 5
    assert "not paper-comparable" in (written / "sed_extras.md").read_text()
    csv_rows = list(csv.reader(io.StringIO((written / "sed_extras.csv").read_text())))
    assert csv_rows[0][:5] == ["label", "sed psds1", "sed psds2", "sed collar_f1_macro",
                               "sed avg mAP"]
    assert csv_rows[3][1:4] == ["", "", ""]


def test_published_rows_shown_for_paper_benchmark(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump({
        "source": {"citation": "Some et al., A Paper, 2024", "url": "https://example.org/p",
                   "location": "Table 3"},
        "unit": "percent",
        "tables": {"main": [{"label": "UniAV", "values": {
            "tal": {0.5: 60.1, 0.75: None, 0.95: 10.0, "avg": 40.25},
            "sed": {"0.5": 70.0}}}]}}))
    config = _config("paper", str(published))
    tables = build_tables(config, tmp_path / "metrics")
    main = tables["main"]["compact"]
    row = main.rows[-1]
    assert row.label == "UniAV (published)" and row.source == "published"
    assert [format_percent(row.values[c]) for c in main.columns[:5]] == \
        ["60.10", "–", "10.00", "40.25", "70.00"]
    assert any("Some et al., A Paper, 2024, Table 3" in note for note in main.notes)
    assert any("not transcribed yet" in note for note in main.notes)
    # the ablation section of the file is empty: no published rows there
    assert all(r.source == "measured" for r in tables["ablation"]["full"].rows)
    # not shown on the synthetic benchmark (not comparable)
    synthetic = build_tables(_config("synthetic", str(published)), tmp_path / "metrics")
    assert all(r.source == "measured" for r in synthetic["main"]["full"].rows)


def test_project_published_file_is_cited_and_valid() -> None:
    published = load_published(REPO_ROOT / "workflow" / "published" / "uniav_arxiv2404.03179.yaml")
    assert "2404.03179" in published.citation + published.url
    assert set(published.tables) >= {"main"}


def test_missing_metrics_file_is_named(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    (tmp_path / "metrics" / "single_sed.json").unlink()
    with pytest.raises(InputError, match=r"single_sed\.json"):
        build_tables(_config(), tmp_path / "metrics")


def test_row_with_two_experiments_for_one_task_is_refused(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["tables"] = {"main": [{"label": "bad", "experiments": ["single_tal", "uniav"]}]}
    with pytest.raises(InputError, match="trained by both"):
        build_tables(config_from_dict(raw), tmp_path / "metrics")


def test_display_thresholds_fall_back_for_other_grids() -> None:
    assert display_thresholds("tal", TAL_T, "full") == [0.5, 0.75, 0.95]
    assert display_thresholds("sed", SED_T, "full") == SED_T
    assert display_thresholds("sed", SED_T, "compact") == [0.5, 0.7, 0.9]
    assert display_thresholds("tal", [0.3, 0.4], "full") == [0.3, 0.4]
    assert display_thresholds("new", [0.1, 0.2, 0.3, 0.4, 0.5], "compact") == [0.1, 0.3, 0.5]


def test_latex_escape() -> None:
    assert latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


# --------------------------------------------------------------------------------------------
# Protocol in the captions, protocol of the metrics files
# --------------------------------------------------------------------------------------------

CLEAN = "Protocol: clean (validation on a held-out split; no test data in any decision)."
RELEASED = ("Protocol: released (the released code's protocol: the plateau gate reads test-split "
            "mAP of the raw model, as the released implementation does; the last epoch's EMA "
            "weights are evaluated).")


def test_every_caption_states_the_protocol(written: Path) -> None:
    for name in ("main", "ablation", "sed_extras"):
        assert CLEAN in (written / f"{name}.md").read_text()
        tex = (written / f"{name}.tex").read_text()
        caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
        assert CLEAN in caption
        sidecar = json.loads((written / f"{name}.csv-metadata.json").read_text())
        assert sidecar["url"] == f"{name}.csv" and CLEAN in sidecar["dc:description"]
        # the CSV itself stays plain: its first line is the header
        assert (written / f"{name}.csv").read_text().startswith("label,")


def test_released_protocol_caption(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    for name in ("single_tal", "uniav"):  # with the key, as `uniav evaluate` writes it
        path = tmp_path / "metrics" / f"{name}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "protocol": "released"}))
    config = _config(protocol="released")
    assert config.protocol == "released"
    write_tables(config, tmp_path / "metrics", tmp_path / "tables")
    for name in ("main", "ablation", "sed_extras"):
        assert RELEASED in (tmp_path / "tables" / f"{name}.md").read_text()
        assert RELEASED.replace("%", r"\%") in (tmp_path / "tables" / f"{name}.tex").read_text()
    # a released run whose gate reads the EMA model is not described as the released code
    changed = _config(protocol="released", overrides={"train": {"plateau_gate": {"model": "ema"}}})
    text = describe_protocol(changed, ["tal", "sed"])
    assert text.startswith("released (the released code's protocol, changed: ")
    assert "the plateau gate reads the EMA model" in text and "raw model" not in text


def test_metrics_file_of_another_protocol_is_refused(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    path = tmp_path / "metrics" / "no_experts.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "protocol": "released"}))
    with pytest.raises(InputError, match=r"no_experts\.json.*protocol 'released'.*'clean'"):
        build_tables(_config(), tmp_path / "metrics")
    with pytest.raises(InputError, match=r"no_experts\.json"):
        write_summary(_config(), tmp_path / "metrics", tmp_path / "summary.json", ["no_experts"])
    # the configuration's own protocol is accepted, with or without the key
    path.write_text(json.dumps({**json.loads(path.read_text()), "protocol": "clean"}))
    assert build_tables(_config(), tmp_path / "metrics")["ablation"]["full"].rows


# --------------------------------------------------------------------------------------------
# results/metrics/summary.json for DVC
# --------------------------------------------------------------------------------------------

def _only_numbers(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_numbers(v) for k, v in value.items())
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_tables_command_writes_a_flat_summary(tmp_path: Path) -> None:
    from uniav.cli import main

    _write_metrics(tmp_path / "metrics")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_raw(), sort_keys=False))
    assert main(["tables", "--config", str(params), "--metrics-dir", str(tmp_path / "metrics"),
                 "--output-dir", str(tmp_path / "tables"),
                 "--summary", str(tmp_path / "summary.json"), "--no-tracking"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert _only_numbers(summary)
    # every experiment of a table row, experiment -> task -> average mAP (a few numbers: one
    # column each in `dvc metrics show`)
    assert list(summary) == ["single_tal", "single_sed", "single_avel", "uniav", "no_experts"]
    assert list(summary["uniav"]) == ["tal", "sed", "avel"]
    assert list(summary["single_tal"]) == ["tal"]
    # the same numbers as the tables (fractions here, percent there)
    assert summary["single_tal"]["tal"] == pytest.approx(0.455)
    assert summary["single_sed"]["sed"] == pytest.approx(0.56)


def test_summary_leaves_out_what_is_not_a_number(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    path = tmp_path / "metrics" / "single_sed.json"
    data = json.loads(path.read_text())
    data["tasks"]["sed"]["average_mAP"] = float("nan")  # JSON NaN: no value
    path.write_text(json.dumps(data))
    write_summary(_config(), tmp_path / "metrics", tmp_path / "summary.json",
                  ["single_sed", "uniav"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["single_sed"] == {} and _only_numbers(summary)
    assert set(summary["uniav"]) == {"tal", "sed", "avel"}


def test_summary_never_overwrites_an_experiment_metrics_file(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "metrics")
    with pytest.raises(ConfigError, match="experiments.uniav"):
        write_summary(_config(), tmp_path / "metrics", tmp_path / "metrics" / "uniav.json",
                      ["uniav"])


def test_renderers_keep_labels_as_text_and_separate_published_rows() -> None:
    from uniav.report.tables import (Column, Row, Table, render_csv, render_latex,
                                     render_markdown)

    columns = [Column("tal", 0.5), Column("tal", None)]
    table = Table("main", "Main results", "A caption.", columns, [
        Row("2024", {columns[0]: 0.123456, columns[1]: None}, "measured", {"tal": "e"}),
        Row("a|b (published)", {columns[0]: None, columns[1]: 0.5}, "published")])
    rows = _markdown_rows(render_markdown(table))
    assert rows[2] == ["2024", "12.35", "–"]
    assert rows[3][-2:] == ["–", "50.00"] and rows[3][0].startswith("a\\")
    assert render_csv(table).splitlines()[1:] == ["2024,12.35,,measured,tal=e",
                                                  "a|b (published),,50.00,published,"]
    tex = render_latex(table).splitlines()
    assert tex[tex.index(r"\cmidrule(lr){2-3}") - 1] == r" & \multicolumn{2}{c}{TAL} \\"
    body = tex[tex.index(r"\midrule") + 1:tex.index(r"\bottomrule")]
    assert body == [r"2024 & 12.35 & -- \\", r"\midrule", r"a|b (published) & -- & 50.00 \\"]
    empty = Table("main", "Main results", "A caption.", columns, [])
    assert _markdown_rows(render_markdown(empty))[2][0] == "(no rows configured)"
