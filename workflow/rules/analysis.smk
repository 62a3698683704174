# Analyses (PAPER §5): one job per (analysis, run), plus the compute profile of the whole profile.


rule analyze:
    input:
        lambda wc: stage("analyze", analysis=wc.analysis, run=wc.run).deps,
    output:
        directory(f"results/{P}/analysis/{{analysis}}/{{run}}"),
    params:
        cmd=lambda wc: stage("analyze", analysis=wc.analysis, run=wc.run).cmd,
        options=lambda wc: json.dumps(PROFILE.analysis_options[wc.analysis], sort_keys=True),
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/analyze/{{analysis}}-{{run}}.log",
    threads: THREADS
    resources:
        gpu=lambda wc: stage("analyze", analysis=wc.analysis, run=wc.run).resources["gpu"],
    shell:
        "{params.cmd}"


rule analyze_compute:
    input:
        STAGES["analyze-compute"].deps if "analyze-compute" in STAGES else [],
    output:
        directory(f"results/{P}/analysis/compute"),
    params:
        cmd=STAGES["analyze-compute"].cmd if "analyze-compute" in STAGES else "",
        options=json.dumps(PROFILE.analysis_options.get("compute", {}), sort_keys=True),
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/analyze/compute.log",
    threads: THREADS
    resources:
        gpu=STAGES["analyze-compute"].resources.get("gpu", 0) if "analyze-compute" in STAGES else 0,
    shell:
        "{params.cmd}"
