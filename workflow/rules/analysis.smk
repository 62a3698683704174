# Analyses (PAPER §5): one job per (analysis, run), plus the compute profile of the whole profile.


rule analyze:
    input:
        lambda wc: stage("analyze", analysis=wc.analysis, run=wc.run).deps,
    output:
        directory(f"results/{P}/analysis/{{analysis}}/{{run}}"),
    params:
        cmd=lambda wc: Command(stage("analyze", analysis=wc.analysis, run=wc.run).cmd),
        reads=lambda wc: stage("analyze", analysis=wc.analysis, run=wc.run).reads,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/analyze/{{analysis}}-{{run}}.log",
    threads: lambda wc: job_threads(stage("analyze", analysis=wc.analysis, run=wc.run))
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
        cmd=Command(STAGES["analyze-compute"].cmd if "analyze-compute" in STAGES else ""),
        reads=STAGES["analyze-compute"].reads if "analyze-compute" in STAGES else "{}",
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/analyze/compute.log",
    threads: job_threads(STAGES["analyze-compute"]) if "analyze-compute" in STAGES else 1
    resources:
        gpu=STAGES["analyze-compute"].resources.get("gpu", 0) if "analyze-compute" in STAGES else 0,
    shell:
        "{params.cmd}"
