"""The settings each job of the workflow reads: its rerun trigger (:meth:`JobPlan.settings
<uniav.pipeline.jobs.JobPlan.settings>` turns them into canonical JSON).

Each command owns the list of settings it reads; this module only dispatches to it by job name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uniav.pipeline.jobs import JobPlan


def job_settings(plan: JobPlan, job: str, **wildcards: str) -> Any:
    """The settings ``job`` reads, as plain data.

    Args:
        plan: the job plan (its configuration, run names and download targets).
        job: ``synthesize``, ``download``, ``extract``, ``prompts``, ``train``,
            ``evaluate``, ``cross_task``, ``tables`` or ``figures``.
        wildcards: the job's wildcards (``task``, ``experiment`` - a run name for ``train``,
            ``evaluate`` and ``cross_task`` -, ``target``...).

    Raises:
        KeyError: no such job.
    """
    config = plan.config
    if job == "synthesize":
        from uniav.prepare.synthetic import generation_record

        record = generation_record(config, wildcards["task"])
        record.pop("fingerprint", None)
        return record
    if job == "download":
        names = set(plan.download_names(wildcards["target"]))
        # checksums and descriptions are left out: `uniav download` verifies checksums itself
        # and keeps files that match, so pinning a hash must not delete unpacked data
        return [{"name": e.name, "url": e.url, "dest": e.dest, "unpack": e.unpack}
                for e in config.datasets.paper.manifest if e.name in names]
    if job == "extract":
        from uniav.prepare.extract import extraction_settings

        return extraction_settings(config, wildcards["task"])
    if job == "prompts":
        from uniav.prepare.prompts import prompt_settings

        return {**prompt_settings(config, wildcards["task"]), "benchmark": config.benchmark}
    if job in ("train", "evaluate", "cross_task"):
        from uniav.engine.cross_task import cross_task_settings
        from uniav.engine.inference import evaluation_settings
        from uniav.engine.training_data import training_settings

        reader = {"train": training_settings, "evaluate": evaluation_settings,
                  "cross_task": cross_task_settings}[job]
        experiment, _ = plan.run_of(wildcards["experiment"])
        return reader(plan.run_config(wildcards["experiment"]), experiment)
    if job == "tables":
        from uniav.report.tables import tables_settings

        return tables_settings(config)
    if job == "figures":
        from uniav.report.figures import figures_settings

        return figures_settings(config)
    raise KeyError(f"no job {job!r} in the plan")
