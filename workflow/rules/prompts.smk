# Phase `features` (continued): class-prompt embeddings, one matrix per task (rows = classes
# of the task's annotation file), from the sentence encoder or a given .npy file.


rule prompts:
    """Embed "A visual action of {class}." etc. for every class of one task."""
    input:
        unpack(prompt_inputs),
    output:
        embeddings=f"{PLAN.prompts_dir()}/{{task}}.npy",
        meta=f"{PLAN.prompts_dir()}/{{task}}.json",
    params:
        config=effective_config_param,
        settings=settings_of("prompts"),
    log:
        "logs/prompts/{task}.log",
    conda:
        UNIAV_ENV
    shell:
        "uniav prompts --config {params.config} --task {wildcards.task} > {log} 2>&1"
