"""Training curves of an experiment run with several seeds (``seeds:``): every seed's curve.

``curves/<experiment>.csv`` gets a leading ``seed`` column (the rows of each seed's run, in
``seeds`` order) and ``training_curves/<experiment>.png`` draws one line per task and seed (the
colour is the task, the line style the seed).  With one seed :mod:`uniav.report.figures` writes
the single run's curve exactly as without ``seeds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uniav.fileio import atomic_write_text
from uniav.report.table_data import TASK_TITLES

_STYLES = ("-", "--", ":", "-.")


def write_seed_curves_csv(trainings: dict[int, dict[str, Any]], path: str | Path) -> Path:
    """One experiment's per-epoch curves of every seed (``{seed: training}``) as one CSV, first
    column ``seed``, then the columns of :func:`~uniav.report.figures.curve_records`."""
    from uniav.report.figures import _csv_text, curve_records

    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    for seed, training in trainings.items():
        names, records = curve_records(training)
        columns += [c for c in names if c not in columns]
        rows += [{"seed": seed, **record} for record in records]
    atomic_write_text(path, _csv_text(["seed", *columns], rows))
    return Path(path)


def plot_seed_training_curves(experiment: str, trainings: dict[int, dict[str, Any]],
                              path: str | Path) -> Path:
    """Training loss and validation average mAP per task and epoch, one line per seed."""
    from uniav.report.figures import _nan, _pyplot, _save, curve_records

    plt = _pyplot()
    fig, (loss_ax, map_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours: dict[str, Any] = {}
    for index, (seed, training) in enumerate(trainings.items()):
        columns, records = curve_records(training)
        epochs = [r["epoch"] for r in records]
        style = _STYLES[index % len(_STYLES)]
        for task in [c[len("train_loss_"):] for c in columns if c.startswith("train_loss_")]:
            colour = colours.setdefault(task, f"C{len(colours)}")
            label = f"{TASK_TITLES.get(task, task)} seed {seed}"
            loss_ax.plot(epochs, [_nan(r[f"train_loss_{task}"]) for r in records], style,
                         color=colour, marker="o", markersize=3, label=label)
            map_ax.plot(epochs, [100 * _nan(r[f"val_average_mAP_{task}"]) for r in records],
                        style, color=colour, marker="o", markersize=3, label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="Training loss")
    map_ax.set(xlabel="epoch", ylabel="validation average mAP (%)", title="Validation mAP")
    for ax in (loss_ax, map_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{experiment}: training curves of {len(trainings)} seeds "
                 f"({', '.join(str(s) for s in trainings)})")
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)
