# fetch -> prepare: download (or locate) a dataset, verify it, convert it to compact arrays.


rule fetch:
    input:
        lambda wc: stage("fetch", dataset=wc.dataset).deps,
    output:
        directory("data/raw/{dataset}"),
    params:
        cmd=lambda wc: stage("fetch", dataset=wc.dataset).cmd,
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
        cmd=lambda wc: stage("prepare", dataset=wc.dataset, subset=wc.subset).cmd,
        subset=lambda wc: json.dumps(PROFILE.datasets[f"{wc.dataset}/{wc.subset}"].subset_spec, sort_keys=True),
    conda:
        "../envs/karat.yaml"
    log:
        "logs/data/prepare-{dataset}-{subset}.log",
    shell:
        "{params.cmd}"
