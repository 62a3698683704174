# ViT-Det Mask R-CNN (PAPER §3.5, Tables 11-12): detect_fetch -> detect_prepare per COCO-format data set,
# detect_train -> detect_evaluate per run. A run whose backbone starts from a classification run has that run's
# weights among its inputs (src/karat/pipeline: _detection_stages).

DET_DATA = PROFILE.detection_data


wildcard_constraints:
    detset=alternatives(DET_DATA),
    detrun=alternatives(PROFILE.detection),


rule detect_fetch:
    input:
        lambda wc: stage("detect_fetch", detset=wc.detset).deps,
    output:
        directory("data/raw/{detset}"),
    params:
        cmd=lambda wc: Command(stage("detect_fetch", detset=wc.detset).cmd),
        reads=lambda wc: stage("detect_fetch", detset=wc.detset).reads,
    conda:
        "../envs/karat.yaml"
    log:
        "logs/data/detect_fetch-{detset}.log",
    shell:
        "{params.cmd}"


rule detect_prepare:
    input:
        lambda wc: stage("detect_prepare", detset=wc.detset).deps,
    output:
        directory("data/prepared/{detset}/s{size}"),
    params:
        cmd=lambda wc: Command(stage("detect_prepare", detset=wc.detset).cmd),
        reads=lambda wc: stage("detect_prepare", detset=wc.detset).reads,
    conda:
        "../envs/karat.yaml"
    log:
        "logs/data/detect_prepare-{detset}-s{size}.log",
    shell:
        "{params.cmd}"


rule detect_train:
    input:
        lambda wc: stage("detect_train", detrun=wc.detrun).deps,
    output:
        f"runs/{P}/{{detrun}}/model.safetensors",
        f"runs/{P}/{{detrun}}/train.json",
        f"runs/{P}/{{detrun}}/log.csv",
    params:
        cmd=lambda wc: Command(stage("detect_train", detrun=wc.detrun).cmd),
        reads=lambda wc: stage("detect_train", detrun=wc.detrun).reads,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/detect_train/{{detrun}}.log",
    threads: lambda wc: job_threads(stage("detect_train", detrun=wc.detrun))
    resources:
        gpu=lambda wc: stage("detect_train", detrun=wc.detrun).resources["gpu"],
    shell:
        "{params.cmd}"


rule detect_evaluate:
    input:
        lambda wc: stage("detect_evaluate", detrun=wc.detrun).deps,
    output:
        f"runs/{P}/{{detrun}}/eval.json",
        f"runs/{P}/{{detrun}}/metrics.json",
    params:
        cmd=lambda wc: Command(stage("detect_evaluate", detrun=wc.detrun).cmd),
        reads=lambda wc: stage("detect_evaluate", detrun=wc.detrun).reads,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/detect_evaluate/{{detrun}}.log",
    threads: lambda wc: job_threads(stage("detect_evaluate", detrun=wc.detrun))
    resources:
        gpu=lambda wc: stage("detect_evaluate", detrun=wc.detrun).resources["gpu"],
    shell:
        "{params.cmd}"
