# Helpers shared by the rules: look a job up in the stage list built from params.yaml.


def stage(kind, **wildcards):
    """The stage of `kind` whose wildcards match (e.g. stage("train", run="cifar10-...-s0"))."""
    parts = [kind] + [wildcards[k] for k in ("analysis", "dataset", "subset", "run", "detset", "detrun") if k in wildcards]
    return STAGES["-".join(parts)]


def alternatives(values):
    """A wildcard constraint that matches exactly these values."""
    import re

    return "|".join(re.escape(v) for v in sorted(values)) or "(?!)"


wildcard_constraints:
    dataset=alternatives({s.wildcards["dataset"] for s in STAGES.values() if s.kind == "fetch"}),
    subset=alternatives({s.wildcards["subset"] for s in STAGES.values() if s.kind == "prepare"}),
    run=alternatives(PROFILE.runs),
    analysis=alternatives([a for a in PROFILE.analyses if a != "compute"]),
