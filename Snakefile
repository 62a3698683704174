# karat-repro workflow.
#
#   snakemake --cores all                          # the default profile (params.yaml: `profile:`)
#   snakemake --cores all --config profile=paper   # another profile
#   snakemake --cores all --config params=my.yaml  # another params file
#
# The jobs come from src/karat/pipeline (the same stage list that generates dvc.yaml); params.yaml is
# validated against src/karat/config/params.schema.yaml before anything runs. Rules are split by stage in
# workflow/rules/. Training jobs declare a `gpu` resource; on a machine with k GPUs at most k run at once
# and each claims its own device (karat.utils.gpus).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # usable before `pip install -e .`

from karat.config import load_profile
from karat.pipeline import TORCH_KINDS, by_name, detect_gpus, stages


PARAMS = config.get("params", "params.yaml")
PROFILE = load_profile(PARAMS, config.get("profile"))
N_GPUS = int(config.get("gpus", detect_gpus()))
STAGES = by_name(stages(PROFILE.name, PARAMS, gpus_available=N_GPUS))
P = PROFILE.name
# Torch jobs run the profile's thread count (profiles.<name>.threads, default karat.pipeline.DEFAULT_THREADS),
# set by the job itself (--threads on its command line), the same under DVC: --cores, threads_per_job and
# OMP_NUM_THREADS change how many jobs run at once, never what a job computes (workflow/rules/common.smk).

# On one machine at most N_GPUS GPU jobs run at once (each claims its own device); on a cluster the
# scheduler owns the GPUs (workflow/profiles/slurm sets cluster=slurm).
if N_GPUS and not config.get("cluster") and "gpu" not in workflow.global_resources:
    workflow.global_resources["gpu"] = N_GPUS


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/detection.smk"


# One orchestrator at a time per working copy: a Snakemake about to run jobs holds .karat_state/snakemake.lock
# for its life and refuses while `dvc repro` runs here (karat.utils.orchestrator). The lock dies with the
# process, so the default workflow profile turns Snakemake's own lock off (no --unlock after a crash).
onstart:
    from karat.utils.orchestrator import claim_for_snakemake

    claim_for_snakemake(".")


# Every stage's outputs are targets, not only the report's: a run (or any artifact) deleted by hand is made
# again, although the report that used it still exists.
rule all:
    default_target: True
    input:
        [out for s in STAGES.values() for out in s.all_outputs],
