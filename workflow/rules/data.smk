# fetch -> prepare: download (or locate) a dataset, verify it, convert it to compact arrays.


rule fetch:
    input:
        lambda wc: stage("fetch", dataset=wc.dataset).deps,
    output:
        directory("data/raw/{dataset}"),
    params:
        cmd=lambda wc: Command(stage("fetch", dataset=wc.dataset).cmd),
        reads=lambda wc: stage("fetch", dataset=wc.dataset).reads,
    conda:
        "../envs/karat.yaml"
    log:
        "logs/data/fetch-{dataset}.log",
    shell:
        "{params.cmd}"


rule prepare:
    input:
        lambda wc: stage("prepare", dataset=wc.dataset, subset=wc.subset).deps,
    output:
        directory("data/prepared/{dataset}/{subset}"),
    params:
        cmd=lambda wc: Command(stage("prepare", dataset=wc.dataset, subset=wc.subset).cmd),
        reads=lambda wc: stage("prepare", dataset=wc.dataset, subset=wc.subset).reads,
    conda:
        "../envs/karat.yaml"
    log:
        "logs/data/prepare-{dataset}-{subset}.log",
    shell:
        "{params.cmd}"
