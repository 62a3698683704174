# train -> evaluate, one job per run of the profile. `params.reads` holds the values of exactly the params.yaml
# keys the job reads (a train job not eval_batch_size / report_weights, its evaluate job does; a derived run its
# own group's keys only): Snakemake's params rerun-trigger reruns exactly the jobs whose inputs changed.


rule train:
    input:
        lambda wc: stage("train", run=wc.run).deps,
    output:
        f"runs/{P}/{{run}}/model.safetensors",
        f"runs/{P}/{{run}}/ema.safetensors",
        f"runs/{P}/{{run}}/best.safetensors",
        f"runs/{P}/{{run}}/best_ema.safetensors",
        f"runs/{P}/{{run}}/train.json",
        directory(f"runs/{P}/{{run}}/snapshots"),
        f"runs/{P}/{{run}}/log.csv",
    params:
        cmd=lambda wc: Command(stage("train", run=wc.run).cmd),
        reads=lambda wc: stage("train", run=wc.run).reads,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/train/{{run}}.log",
    threads: lambda wc: job_threads(stage("train", run=wc.run))
    resources:
        gpu=lambda wc: stage("train", run=wc.run).resources["gpu"],
    shell:
        "{params.cmd}"


rule evaluate:
    input:
        lambda wc: stage("evaluate", run=wc.run).deps,
    output:
        f"runs/{P}/{{run}}/eval.json",
        f"runs/{P}/{{run}}/metrics.json",
    params:
        cmd=lambda wc: Command(stage("evaluate", run=wc.run).cmd),
        reads=lambda wc: stage("evaluate", run=wc.run).reads,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/evaluate/{{run}}.log",
    threads: lambda wc: job_threads(stage("evaluate", run=wc.run))
    resources:
        gpu=lambda wc: stage("evaluate", run=wc.run).resources["gpu"],
    shell:
        "{params.cmd}"
