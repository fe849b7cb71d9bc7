# Phase `train`: one job per run - per experiment, and per seed of `seeds` (the `{experiment}`
# wildcard is the run name: `E`, or `E.seed<s>`; the command gets `--experiment E --set seed=<s>`,
# JobPlan.run_arguments).  Resumable checkpoints go to work/checkpoints/<run>/<settings hash>/ -- not a declared output, so a failed or
# killed job keeps them and its rerun resumes; a job that finished removes them, so a later
# rerun (new inputs, --forcerun) trains afresh instead of "resuming" a finished run.
# `uniav gpu-slot` gives concurrent local jobs distinct GPUs (a no-op without GPUs or under a
# scheduler that sets CUDA_VISIBLE_DEVICES); with train.processes > 1 a job runs under torchrun
# with one process per GPU and requests that many.  An experiment with `init_from` lists the
# weights it starts from among its inputs and gets `--init-from` them (JobPlan.train_arguments).


rule train:
    """Train one experiment; export the best-on-validation EMA weights and the history."""
    input:
        unpack(experiment_inputs),
    output:
        weights="results/models/{experiment}/model.safetensors",
        history="results/models/{experiment}/training.json",
    params:
        config=effective_config_param,
        settings=settings_of("train"),
        output_dir=model_dir,
        work_dir=checkpoint_dir,
        prompts_dir=prompts_dir_param,
        launcher=train_launcher,
        extra=train_arguments,
        run=run_arguments,
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "benchmarks/train_{experiment}.tsv"
    threads: 4
    resources:
        gpu=train_gpus,
    conda:
        UNIAV_ENV
    shell:
        "uniav gpu-slot --count {resources.gpu} -- {params.launcher} train --config {params.config}"
        " {params.run} --output-dir {params.output_dir}"
        " --work-dir {params.work_dir} --prompts-dir {params.prompts_dir}"
        " --threads {threads} {params.extra} > {log} 2>&1"
        " && rm -rf {params.work_dir}"
