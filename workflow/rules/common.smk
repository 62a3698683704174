# Helpers shared by the rules: look a job up in the stage list built from params.yaml.


def stage(kind, **wildcards):
    """The stage of `kind` whose wildcards match (e.g. stage("train", run="cifar10-...-s0"))."""
    parts = [kind] + [wildcards[k] for k in ("analysis", "dataset", "subset", "run", "detset", "detrun") if k in wildcards]
    return STAGES["-".join(parts)]


class Command:
    """A job's shell command for `shell: "{params.cmd}"`, kept out of Snakemake's params rerun trigger (a value
    of a type Snakemake cannot serialise is not recorded): the command names the params file, and pointing
    Snakemake at another file with the same content (`--config params=...`) must rerun nothing. What a job
    reads is compared by content instead (`params.reads`: the values of its params.yaml keys, the same keys
    DVC tracks in dvc.yaml)."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    def __format__(self, spec):
        return format(self.text, spec)


def job_threads(st):
    """Cores a job reserves: the stage's torch thread count (src/karat/pipeline: profiles.<name>.threads), or
    `--config threads_per_job=N` (a cluster's CPUs per job: data loading workers use the rest). The torch
    thread count itself is on the job's command line, so neither this nor OMP_NUM_THREADS changes results."""
    if st.kind in TORCH_KINDS and "threads_per_job" in config:
        return int(config["threads_per_job"])
    return st.threads


def alternatives(values):
    """A wildcard constraint that matches exactly these values."""
    import re

    return "|".join(re.escape(v) for v in sorted(values)) or "(?!)"


wildcard_constraints:
    dataset=alternatives({s.wildcards["dataset"] for s in STAGES.values() if s.kind == "fetch"}),
    subset=alternatives({s.wildcards["subset"] for s in STAGES.values() if s.kind == "prepare"}),
    run=alternatives(PROFILE.runs),
    analysis=alternatives([a for a in PROFILE.analyses if a != "compute"]),
