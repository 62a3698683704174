# train -> evaluate, one job per run of the profile. `params.spec` is the run's fully resolved
# configuration: Snakemake's params rerun-trigger reruns exactly the runs whose configuration changed.


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
        cmd=lambda wc: stage("train", run=wc.run).cmd,
        spec=lambda wc: json.dumps(PROFILE.runs[wc.run].to_dict(), sort_keys=True),
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/train/{{run}}.log",
    threads: THREADS
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
        cmd=lambda wc: stage("evaluate", run=wc.run).cmd,
        spec=lambda wc: json.dumps(PROFILE.runs[wc.run].to_dict(), sort_keys=True),
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/evaluate/{{run}}.log",
    threads: THREADS
    resources:
        gpu=lambda wc: stage("evaluate", run=wc.run).resources["gpu"],
    shell:
        "{params.cmd}"
