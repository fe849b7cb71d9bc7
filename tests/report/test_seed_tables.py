"""Tables, summary and figures over several seeds: mean ± sample std, n in the captions."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from tests.report.test_tables import SED_T, TAL_T, _config, _markdown_rows, _task
from uniav.report.seeds import mean_std
from uniav.report.tables import write_summary, write_tables

#: Three seeds whose metrics are those of test_tables plus these offsets: mean offset 0.03,
#: sample std sqrt((0.03² + 0.01² + 0.04²) / 2) = 0.036056 -> "± 3.61".
OFFSETS = {1: 0.0, 2: 0.02, 3: 0.07}
EXTRAS = {"psds1": 0.30, "psds2": 0.5, "collar_f1_macro": 0.44}


def _metrics(offset: float) -> dict[str, dict]:
    sed_extras = {key: value + offset for key, value in EXTRAS.items()}
    return {"single_tal": {"tal": _task(TAL_T, 0.50 + offset)},
            "single_sed": {"sed": _task(SED_T, 0.60 + offset, sed_extras)},
            "single_avel": {"avel": _task(SED_T, 0.70 + offset)},
            "uniav": {"tal": _task(TAL_T, 0.55 + offset),
                      "sed": _task(SED_T, 0.65 + offset, sed_extras),
                      "avel": _task(SED_T, 0.75 + offset)},
            "no_experts": {"tal": _task(TAL_T, 0.40 + offset), "sed": _task(SED_T, 0.45 + offset),
                           "avel": _task(SED_T, 0.42 + offset)}}


def _write(directory: Path, runs: dict[str, float]) -> None:
    """``{run suffix: offset}``: each experiment's metrics file ``<experiment><suffix>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, offset in runs.items():
        for name, tasks in _metrics(offset).items():
            (directory / f"{name}{suffix}.json").write_text(json.dumps(
                {"experiment": name, "split": "test", "tasks": tasks}))


@pytest.fixture
def three_seeds(tmp_path: Path) -> Path:
    _write(tmp_path / "metrics", {f".seed{seed}": offset for seed, offset in OFFSETS.items()})
    write_tables(_config(seeds=[1, 2, 3]), tmp_path / "metrics", tmp_path / "tables")
    return tmp_path


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = mean_std([0.50, 0.52, 0.57])
    assert mean == pytest.approx(0.53) and std == pytest.approx(math.sqrt(0.0013))
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([0.5, None]) == (None, None)


def test_markdown_cells_are_mean_plus_minus_std(three_seeds: Path) -> None:
    text = (three_seeds / "tables" / "main.md").read_text()
    rows = _markdown_rows(text)
    assert rows[0][:5] == ["Method", "TAL 0.5", "TAL 0.75", "TAL 0.95", "TAL avg"]
    # test_tables' single-seed cells + 3.00 (the mean offset), ± 3.61 everywhere
    assert rows[2] == ["Single-task", "53.00 ± 3.61", "48.00 ± 3.61", "44.00 ± 3.61",
                       "48.50 ± 3.61", "59.00 ± 3.61", "57.00 ± 3.61", "55.00 ± 3.61",
                       "59.00 ± 3.61", "69.00 ± 3.61", "67.00 ± 3.61", "65.00 ± 3.61",
                       "69.00 ± 3.61"]
    assert rows[3][:2] == ["UniAV", "58.00 ± 3.61"]
    assert "Mean ± sample standard deviation (ddof 1) over n = 3 seeds (1, 2, 3)." in text
    extras = _markdown_rows((three_seeds / "tables" / "sed_extras.md").read_text())
    assert extras[2][:4] == ["Single-task", "33.00 ± 3.61", "53.00 ± 3.61", "47.00 ± 3.61"]
    assert "n = 3 seeds (1, 2, 3)" in (three_seeds / "tables" / "sed_extras.md").read_text()


def test_csv_has_a_std_column_after_each_value(three_seeds: Path) -> None:
    rows = list(csv.reader(io.StringIO((three_seeds / "tables" / "main.csv").read_text())))
    header = rows[0]
    assert header[:5] == ["label", "tal mAP@0.5", "tal mAP@0.5 std", "tal mAP@0.75",
                          "tal mAP@0.75 std"]
    assert header[-4:] == ["avel avg mAP", "avel avg mAP std", "source", "experiments"]
    single = dict(zip(header, rows[1]))
    assert single["tal mAP@0.5"] == "53.00" and single["tal mAP@0.5 std"] == "3.61"
    assert single["sed mAP@0.1"] == "63.00" and single["sed avg mAP std"] == "3.61"
    assert single["experiments"] == "tal=single_tal;sed=single_sed;avel=single_avel"
    metadata = json.loads((three_seeds / "tables" / "main.csv-metadata.json").read_text())
    assert metadata["dc:description"].endswith("over n = 3 seeds (1, 2, 3).")


def test_latex_cells_use_pm(three_seeds: Path) -> None:
    tex = (three_seeds / "tables" / "main.tex").read_text()
    assert r"Single-task & 53.00 $\pm$ 3.61 & 48.00 $\pm$ 3.61 & " in tex
    ablation = (three_seeds / "tables" / "ablation.tex").read_text()
    assert r"w/o experts \& co\_1 & 43.00 $\pm$ 3.61" in ablation
    assert "n = 3 seeds (1, 2, 3)" in tex


def test_summary_holds_mean_std_and_n(three_seeds: Path) -> None:
    path = three_seeds / "summary.json"
    write_summary(_config(seeds=[1, 2, 3]), three_seeds / "metrics", path,
                  ["single_tal", "uniav"])
    summary = json.loads(path.read_text())
    assert list(summary) == ["single_tal", "uniav"]
    tal = summary["single_tal"]["tal"]
    assert tal["mean"] == pytest.approx(0.455 + 0.03)
    assert tal["std"] == pytest.approx(math.sqrt(0.0013))
    assert tal["n"] == 3
    assert list(summary["uniav"]) == ["tal", "sed", "avel"]


def test_two_seeds_use_ddof_one(tmp_path: Path) -> None:
    """seeds [2024, 7]: the primary run's file is `<experiment>.json`, the other's
    `<experiment>.seed7.json`; mean 0.51, std |0.52 - 0.50| / sqrt(2) = 1.41 %."""
    _write(tmp_path / "metrics", {"": 0.0, ".seed7": 0.02})
    write_tables(_config(seeds=[2024, 7]), tmp_path / "metrics", tmp_path / "tables")
    rows = _markdown_rows((tmp_path / "tables" / "main.md").read_text())
    assert rows[2][1] == "51.00 ± 1.41"
    assert "n = 2 seeds (2024, 7)" in (tmp_path / "tables" / "main.md").read_text()


def test_missing_run_metrics_name_the_file(tmp_path: Path) -> None:
    from uniav.errors import InputError

    _write(tmp_path / "metrics", {"": 0.0})
    with pytest.raises(InputError, match=r"single_tal\.seed7\.json"):
        write_tables(_config(seeds=[2024, 7]), tmp_path / "metrics", tmp_path / "tables")


def test_one_seed_gives_the_single_run_tables_byte_for_byte(tmp_path: Path) -> None:
    """`seeds: [5]` (one run, named <experiment>.seed5) renders exactly what the same metrics
    give without seeds."""
    _write(tmp_path / "plain", {"": 0.0})
    _write(tmp_path / "seeded", {".seed5": 0.0})
    write_tables(_config(), tmp_path / "plain", tmp_path / "plain_tables")
    write_tables(_config(seeds=[5]), tmp_path / "seeded", tmp_path / "seeded_tables")
    for path in sorted((tmp_path / "plain_tables").iterdir()):
        assert (tmp_path / "seeded_tables" / path.name).read_bytes() == path.read_bytes()
    write_summary(_config(), tmp_path / "plain", tmp_path / "a.json", ["uniav"])
    write_summary(_config(seeds=[5]), tmp_path / "seeded", tmp_path / "b.json", ["uniav"])
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
