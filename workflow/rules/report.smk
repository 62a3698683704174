# The report: every table and figure of the paper that the profile's runs can fill, beside the paper's.


rule report:
    input:
        STAGES["report"].deps,
    output:
        f"results/{P}/REPORT.md",
        f"results/{P}/report.html",
        directory(f"results/{P}/tables"),
        directory(f"results/{P}/figures"),
        f"results/{P}/claims.json",
        f"results/{P}/metrics.json",
    params:
        cmd=STAGES["report"].cmd,
    conda:
        "../envs/karat.yaml"
    log:
        f"logs/{P}/report.log",
    shell:
        "{params.cmd}"
