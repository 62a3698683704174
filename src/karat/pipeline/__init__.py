"""The DAG of one profile, as data: the single description both orchestrators are built from.

`stages(profile)` lists every job of a profile (fetch -> prepare -> train -> evaluate -> analyze -> report)
with its command, inputs, outputs, params.yaml keys, log, metrics and plots. The Snakefile's rules look
their jobs up here, and `dvc.yaml` is generated from it (`python -m karat dvc-yaml`), so neither DAG is
written twice by hand and the parity test can compare them job by job.

What reruns a job is the same in both orchestrators: the exact params.yaml keys it reads (``Stage.params``,
leaves where a section mixes keys the stage reads with keys it does not, e.g. a train stage does not read
``eval_batch_size``), compared by content. DVC compares those keys' values itself; Snakemake compares
``Stage.reads`` (the same keys' values, a params rerun trigger), never the command line, so pointing Snakemake
at another params file with the same content (``--config params=...``) reruns nothing.

Threads. Every torch stage runs ``threads`` intra-op threads (``profiles.<name>.threads``, default
:data:`DEFAULT_THREADS`), set by the stage itself (``--threads`` on its command line), so the shell's
``OMP_NUM_THREADS`` or Snakemake's ``--cores`` cannot change what a CPU run computes; the count is part of
the training state's fingerprint (a state made with another count is not resumed: karat.training.loop).

Imports no torch: Snakemake evaluates this on every invocation.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from karat.config import DEFAULT_PARAMS, Profile, RunSpec, load_params, load_profile, recipe_chain

REPO_ROOT = Path(__file__).resolve().parents[3]
# Source folders whose code determines a stage's result: editing one reruns the stages that use it. Each
# kind also depends on its own command-line shell (src/karat/stages/<kind>.py) and the shared CLI code.
SCIENCE = {
    "fetch": ["src/karat/data"],
    "prepare": ["src/karat/data"],
    "train": ["src/karat/attention", "src/karat/models", "src/karat/training", "src/karat/data"],
    "evaluate": ["src/karat/attention", "src/karat/models", "src/karat/training", "src/karat/data"],
    "analyze": ["src/karat/analysis", "src/karat/attention", "src/karat/models"],
    "report": ["src/karat/report", "src/karat/analysis", "src/karat/training/assumptions.py"],
    # ViT-Det detection (PAPER §3.5): karat.data.coco, karat.models.vitdet, karat.training.detection
    "detect_fetch": ["src/karat/data/coco.py", "src/karat/data/fetch.py", "src/karat/data/archive.py",
                     "src/karat/data/sources.py"],
    "detect_prepare": ["src/karat/data/coco.py"],
    "detect_train": ["src/karat/attention", "src/karat/models", "src/karat/training", "src/karat/data/coco.py",
                     "src/karat/config/detection.py"],
    "detect_evaluate": ["src/karat/attention", "src/karat/models", "src/karat/training", "src/karat/data/coco.py",
                        "src/karat/config/detection.py"],
}
SHELL = ["src/karat/cli.py", "src/karat/errors.py", "src/karat/stages/__init__.py", "src/karat/stages/_shell.py"]
CODE = {kind: folders + [f"src/karat/stages/{kind}.py"] + SHELL for kind, folders in SCIENCE.items()}
RUN_WEIGHTS = ("model.safetensors", "ema.safetensors", "best.safetensors", "best_ema.safetensors")
# Stage kinds that compute with torch: their command carries --threads.
TORCH_KINDS = frozenset({"train", "evaluate", "analyze", "detect_train", "detect_evaluate"})
# Intra-op threads of a torch stage when the profile sets none (profiles.<name>.threads). A constant, not the
# machine's core count: CPU results depend on the thread count (the order of float reductions), so the same
# params.yaml must compute the same numbers on every machine and under both orchestrators. 2 is what the
# CPU profiles (ci, demo, families) were measured with on the reference 2-core machine; a GPU profile
# loses nothing by it (the GPU computes, data loading has its own worker processes).
DEFAULT_THREADS = 2
# Analyses of one run that compute little (a few forwards at most; their time is mostly Python and torch start-up):
# one intra-op thread each, whatever the profile's ``threads``, so that a scheduler with two cores runs two side
# by side (the demo's 19 such stages took 130 s one after the other at 2 threads). Fixed like the others, so their
# numbers are the same on every machine. The landscape and the compute profile use the profile's threads.
LIGHT_ANALYSES = frozenset({"curves", "weights", "spectra", "attention_maps", "functions"})
# Analyses that compute nothing with torch (they read a run's training log): their command carries neither
# --threads nor --kernels and their stage reads neither key, so the process never loads torch (1.9 s of CPU at
# every start; an analysis without a `device` option may still load weights with it, as `weights` does).
# tests/analysis/test_curves.py runs each in a fresh process and checks that torch stays unloaded.
MODEL_FREE_ANALYSES = frozenset({"curves"})
# Train-recipe keys that do not change the trained weights (how a run is evaluated or reported): a train
# stage does not depend on them, its evaluate stage does. The same keys as
# karat.training.loop.NOT_IN_FINGERPRINT["train"] (which imports torch; tests/pipeline/test_dvc_granular.py
# checks that they agree).
EVAL_ONLY_TRAIN_KEYS = ("report_weights", "eval_batch_size")


@dataclass(frozen=True)
class Stage:
    name: str                      # unique, also the dvc.yaml stage name
    kind: str                      # fetch | prepare | train | evaluate | analyze | report
    wildcards: dict
    cmd: str
    deps: tuple                    # files and folders (folders end without a slash)
    outs: tuple                    # outputs that are not metrics or plots
    params: tuple                  # params.yaml keys (DVC granular params)
    log: str
    metrics: tuple = ()
    plots: tuple = ()
    resources: dict = field(default_factory=dict)
    threads: int = 1               # intra-op threads (torch stages: --threads in cmd); Snakemake's `threads`
    reads: str = "{}"              # the values of `params` (JSON): Snakemake's content rerun trigger

    @property
    def all_outputs(self) -> tuple:
        return tuple(self.outs) + tuple(self.metrics) + tuple(self.plots)


def source_files(entry: str, root: Path = REPO_ROOT) -> set[str]:
    """The code files of one CODE entry (a file, or a folder's .py / .yaml / .json / .csv files outside
    __pycache__), relative to the repository root."""
    path = root / entry
    if path.is_file():
        return {entry}
    if path.is_dir():
        return {str(p.relative_to(root)) for p in path.rglob("*")
                if p.is_file() and p.suffix in (".py", ".yaml", ".json", ".csv") and "__pycache__" not in p.parts}
    return set()


def code_files(kind: str, root: Path = REPO_ROOT) -> list[str]:
    """The source files a stage kind depends on (sorted, relative to the repository root)."""
    files: set[str] = set()
    for entry in CODE[kind]:
        files |= source_files(entry, root)
    return sorted(files)


def _cmd(stage: str, args: list[str], log: str, gpus: int = 1, threads: int | None = None,
         kernels: str = "compiled") -> str:
    launcher = ["python", "-m", "karat"]
    if gpus > 1:  # one data-parallel job over several GPUs of one node
        launcher = ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "karat"]
    extra = ["--threads", str(threads)] if threads else []
    if kernels != "compiled":   # the default adds nothing: the commands of the other profiles stay as they were
        extra += ["--kernels", kernels]
    return " ".join(shlex.quote(a) for a in launcher + [stage] + args + extra + ["--log", log])


def profile_kernels(params: dict, profile: str) -> str:
    """How the profile's torch stages run the fused attention kernels: ``profiles.<profile>.kernels``,
    "compiled" (default: inductor) or "eager" (``--kernels eager`` on their command lines)."""
    return str(params["profiles"][profile].get("kernels", "compiled"))


def profile_threads(params: dict, profile: str) -> int:
    """Intra-op threads of the profile's torch stages: ``profiles.<profile>.threads`` or DEFAULT_THREADS."""
    return int(params["profiles"][profile].get("threads", DEFAULT_THREADS))


_MISSING = object()


def param_value(params: dict, key: str):
    """The value of a dotted params.yaml key as DVC reads it (list items by index: ``groups.2.recipe``)."""
    node = params
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _leaves(params: dict, key: str, skip: tuple = ()) -> list[str]:
    """The keys a stage declares for the section ``key``; [] when it is absent.

    Without ``skip`` the stage reads every key of the section: the section is one key (DVC compares its whole
    value). With ``skip`` (a train stage's train section, which may hold keys that do not change the weights),
    the keys down to the leaves (a list is one value) less ``skip`` at the first level, so the stage does not rerun
    for a key it never reads, nor when such a key is added later (the declared keys stay the same). Fewer keys
    keep DVC fast: it finds each declared key by walking the whole params file (dpath), so `dvc status` on the
    ci profile took 8.7 s with every section by leaves (1,470 keys) on a 2-core machine."""
    value = param_value(params, key)
    if value is _MISSING:
        return []
    if not isinstance(value, dict) or not skip:
        return [key]
    out = []
    for k, v in value.items():
        if k in skip:
            continue
        out += _leaves(params, f"{key}.{k}", ("",)) if isinstance(v, dict) and v else [f"{key}.{k}"]
    return out


def _present(params: dict, keys) -> list[str]:
    return [k for k in keys if param_value(params, k) is not _MISSING]


def _reads(params: dict, keys, **extra) -> str:
    """The JSON Snakemake compares: each key's value (and the thread count, which is on the command line)."""
    values = {k: param_value(params, k) for k in keys}
    return json.dumps({**values, **extra}, sort_keys=True, default=str)


def _group_index(groups: list, name: str) -> int:
    return next(i for i, g in enumerate(groups) if g.get("name") == name)


def _local_sources(spec: dict, root: Path = REPO_ROOT) -> list[str]:
    """Local copies inside the repository (e.g. the test fixture) are inputs; copies outside it are not
    (DVC and Snakemake would otherwise track files that differ from machine to machine)."""
    inside = []
    for entry in spec.get("local", []):
        path = Path(entry)
        if not path.is_absolute() and ".." not in path.parts and (root / path).exists():
            inside.append(path.as_posix())
    return inside


def _optional_keys(params: dict, profile: str, keys: list[str]) -> list[str]:
    prof = params["profiles"][profile]
    return [f"profiles.{profile}.{k}" for k in keys if k in prof]


def _run_params(params: dict, spec: RunSpec, evaluate: bool = False) -> list[str]:
    """The params.yaml keys a run's train (or evaluate) stage reads, as narrow as DVC can track them.

    Recipe: every key of each recipe of the chain, its ``inherit``, and the profile's train/data overrides for
    this run's dataset; a train stage leaves out EVAL_ONLY_TRAIN_KEYS. The run's own group: its ``recipe`` and
    ``model_overrides`` (else the profile's), and for a derived run its ``finetune_from`` / ``attention_from``
    only, so an edit to another group reruns nothing of this run. A key added later to a section the stage
    reads only by leaves needs a regenerated dvc.yaml (Snakemake regenerates its DAG on every call)."""
    skip = () if evaluate else EVAL_ONLY_TRAIN_KEYS
    p = spec.profile
    keys: list[str] = []
    for name in recipe_chain(params, spec.recipe_name):
        keys += _present(params, [f"recipes.{name}.inherit"])
        keys += _leaves(params, f"recipes.{name}.train", skip) + _leaves(params, f"recipes.{name}.data")
    over = f"profiles.{p}.overrides"
    keys += _leaves(params, f"{over}.train", skip) + _leaves(params, f"{over}.data")
    keys += _leaves(params, f"{over}.by_dataset.{spec.dataset}.train", skip)
    keys += _leaves(params, f"{over}.by_dataset.{spec.dataset}.data")
    keys.append(f"attentions.{spec.attention_label}")
    keys.append(f"datasets.{spec.dataset}.num_classes")
    gi = _group_index(params["profiles"][p]["groups"], spec.group)
    group = f"profiles.{p}.groups.{gi}"
    keys.append(f"{group}.recipe")
    keys += _present(params, [f"{group}.model_overrides"]) or _optional_keys(params, p, ["model_overrides"])
    keys += _optional_keys(params, p, ["gpus_per_run"])
    if spec.finetune_from:
        keys.append(f"{group}.finetune_from")
    if spec.attention_from:
        keys.append(f"{group}.attention_from")
        keys.append(f"attentions.{spec.attention_from['teacher']['attention_label']}")
    keys += _optional_keys(params, p, ["threads", "kernels"])
    return list(dict.fromkeys(keys))


def _source_weights(spec: RunSpec, evaluate: bool = False) -> list[str]:
    """The weights files of other runs that this run reads: the upstream run's (fine-tuning, train only) and
    the teacher's (attention transfer, train and evaluate)."""
    files = [] if evaluate or not spec.finetune_from else [spec.finetune_from["file"]]
    if spec.attention_from:
        files.append(spec.attention_from["file"])
    return files


def stages(profile: str | None = None, params_path: str = DEFAULT_PARAMS, gpus_available: int = 0) -> list[Stage]:
    """Every job of a profile, in topological order."""
    params = load_params(params_path)
    prof: Profile = load_profile(params_path, profile)
    p, pp = prof.name, params_path
    out: list[Stage] = []
    use_gpu = 1 if gpus_available > 0 else 0
    code = {kind: code_files(kind) for kind in CODE}  # walk the source tree once, not once per job
    nt = profile_threads(params, p)
    kern = profile_kernels(params, p)

    fetched = set()
    for need in prof.datasets.values():
        if need.dataset not in fetched:
            fetched.add(need.dataset)
            log = f"logs/data/fetch-{need.dataset}.log"
            out.append(Stage(
                name=f"fetch-{need.dataset}", kind="fetch", wildcards={"dataset": need.dataset},
                cmd=_cmd("fetch", ["--params", pp, "--dataset", need.dataset], log),
                deps=tuple(_local_sources(need.spec) + code["fetch"]), outs=(str(need.raw_dir),),
                params=(f"datasets.{need.dataset}",), log=log,
                reads=_reads(params, [f"datasets.{need.dataset}"])))
        log = f"logs/data/prepare-{need.dataset}-{need.subset}.log"
        out.append(Stage(
            name=f"prepare-{need.dataset}-{need.subset}", kind="prepare",
            wildcards={"dataset": need.dataset, "subset": need.subset},
            cmd=_cmd("prepare", ["--params", pp, "--dataset", need.dataset, "--subset", need.subset], log),
            deps=tuple([str(need.raw_dir)] + code["prepare"]), outs=(str(need.prepared_dir),),
            params=(f"subsets.{need.subset}",), log=log, reads=_reads(params, [f"subsets.{need.subset}"])))

    for rid, spec in prof.runs.items():
        run_dir = spec.out_dir.as_posix()
        res = {"gpu": use_gpu * spec.gpus}
        log = f"logs/{p}/train/{rid}.log"
        keys = _run_params(params, spec)
        out.append(Stage(
            name=f"train-{rid}", kind="train", wildcards={"run": rid},
            cmd=_cmd("train", ["--params", pp, "--profile", p, "--run", rid], log, gpus=spec.gpus, threads=nt,
                     kernels=kern),
            deps=tuple([str(spec.prepared_dir)] + _source_weights(spec) + code["train"]),
            outs=tuple(f"{run_dir}/{w}" for w in RUN_WEIGHTS) + (f"{run_dir}/train.json", f"{run_dir}/snapshots"),
            plots=(f"{run_dir}/log.csv",),
            params=tuple(keys), log=log, resources=res, threads=nt, reads=_reads(params, keys, threads=nt)))
        log = f"logs/{p}/evaluate/{rid}.log"
        keys = _run_params(params, spec, evaluate=True)
        out.append(Stage(
            name=f"evaluate-{rid}", kind="evaluate", wildcards={"run": rid},
            cmd=_cmd("evaluate", ["--params", pp, "--profile", p, "--run", rid], log, threads=nt, kernels=kern),
            deps=tuple([str(spec.prepared_dir)] + [f"{run_dir}/{w}" for w in RUN_WEIGHTS]
                       + [f"{run_dir}/train.json"] + _source_weights(spec, evaluate=True) + code["evaluate"]),
            outs=(f"{run_dir}/eval.json",), metrics=(f"{run_dir}/metrics.json",),
            params=tuple(keys), log=log, resources={"gpu": use_gpu}, threads=nt,
            reads=_reads(params, keys, threads=nt)))

    analysis_dirs = []
    for aname, run_ids in prof.analyses.items():
        akey = f"profiles.{p}.analyses.{aname}"
        akeys = [akey] + _optional_keys(params, p, ["threads", "kernels"])
        if aname == "compute":
            adir = (prof.results_dir / "analysis" / "compute").as_posix()
            log = f"logs/{p}/analyze/compute.log"
            out.append(Stage(
                name="analyze-compute", kind="analyze", wildcards={"analysis": "compute", "run": "all"},
                cmd=_cmd("analyze", ["compute", "--params", pp, "--profile", p], log, threads=nt, kernels=kern),
                deps=tuple(code["analyze"]), outs=(adir,), params=tuple(akeys), log=log,
                resources={"gpu": use_gpu}, threads=nt, reads=_reads(params, akeys, threads=nt)))
            analysis_dirs.append(adir)
            continue
        for rid in run_ids:
            spec = prof.runs[rid]
            run_dir = spec.out_dir.as_posix()
            adir = (prof.results_dir / "analysis" / aname / rid).as_posix()
            if aname == "curves":
                run_inputs = [f"{run_dir}/log.csv", f"{run_dir}/metrics.json"]
            elif aname in ("landscape", "weights"):
                run_inputs = [f"{run_dir}/model.safetensors", f"{run_dir}/snapshots", f"{run_dir}/train.json"]
            else:
                run_inputs = [f"{run_dir}/model.safetensors", f"{run_dir}/train.json"]
            data_inputs = [] if aname in ("curves", "weights") else [str(spec.prepared_dir)]
            log = f"logs/{p}/analyze/{aname}-{rid}.log"
            if aname in MODEL_FREE_ANALYSES:
                at, keys, torch_args = 1, [akey], {}
            else:
                at = 1 if aname in LIGHT_ANALYSES else nt
                keys, torch_args = akeys, {"threads": at, "kernels": kern}
            out.append(Stage(
                name=f"analyze-{aname}-{rid}", kind="analyze", wildcards={"analysis": aname, "run": rid},
                cmd=_cmd("analyze", [aname, "--params", pp, "--profile", p, "--run", rid], log, **torch_args),
                deps=tuple(run_inputs + data_inputs + code["analyze"]), outs=(adir,),
                params=tuple(keys), log=log, resources={"gpu": use_gpu if aname == "landscape" else 0},
                threads=at, reads=_reads(params, keys, **({"threads": at} if torch_args else {}))))
            analysis_dirs.append(adir)

    out += _detection_stages(params, prof, pp, code, use_gpu, nt)

    rdir = prof.results_dir.as_posix()
    log = f"logs/{p}/report.log"
    out.append(Stage(
        name="report", kind="report", wildcards={},
        cmd=_cmd("report", ["--params", pp, "--profile", p], log),
        deps=tuple([f"{s.out_dir.as_posix()}/eval.json" for s in prof.runs.values()]
                   + [f"{s.out_dir.as_posix()}/log.csv" for s in prof.runs.values()]
                   + [f"{s.out_dir.as_posix()}/{f}" for s in prof.detection.values() for f in ("eval.json", "log.csv")]
                   + analysis_dirs + code["report"]),
        outs=(f"{rdir}/REPORT.md", f"{rdir}/report.html", f"{rdir}/tables", f"{rdir}/figures",
              f"{rdir}/claims.json"),
        metrics=(f"{rdir}/metrics.json",),
        params=(f"profiles.{p}",), log=log, reads=_reads(params, [f"profiles.{p}"])))
    return out


def _detection_stages(params: dict, prof: Profile, pp: str, code: dict, use_gpu: int, nt: int) -> list[Stage]:
    """ViT-Det (PAPER §3.5): detect_fetch -> detect_prepare per data set, detect_train -> detect_evaluate per
    run; a run initialised from a classification run depends on that run's weights file. Each run's stages
    read its recipe chain (detect_train less the keys outside its fingerprint) and its own detection group."""
    from karat.config.detection import NOT_IN_FINGERPRINT, DetectionRunSpec

    p, out = prof.name, []
    kern = profile_kernels(params, p)
    for ds, need in prof.detection_data.items():
        gen = need.spec.get("generate") or {}
        local = _local_sources({"local": [gen["source"]]}) if gen.get("source") else _local_sources(need.spec)
        log = f"logs/data/detect_fetch-{ds}.log"
        out.append(Stage(
            name=f"detect_fetch-{ds}", kind="detect_fetch", wildcards={"detset": ds},
            cmd=_cmd("detect_fetch", ["--params", pp, "--dataset", ds], log),
            deps=tuple(local + code["detect_fetch"]), outs=(str(need.raw_dir),),
            params=(f"detection.datasets.{ds}",), log=log, reads=_reads(params, [f"detection.datasets.{ds}"])))
        log = f"logs/data/detect_prepare-{ds}-s{need.spec['max_size']}.log"
        out.append(Stage(
            name=f"detect_prepare-{ds}", kind="detect_prepare", wildcards={"detset": ds},
            cmd=_cmd("detect_prepare", ["--params", pp, "--dataset", ds], log),
            deps=tuple([str(need.raw_dir)] + code["detect_prepare"]), outs=(need.prepared_dir.as_posix(),),
            params=(f"detection.datasets.{ds}",), log=log, reads=_reads(params, [f"detection.datasets.{ds}"])))
    for rid, spec in prof.detection.items():
        spec: DetectionRunSpec
        run_dir = spec.out_dir.as_posix()
        chain, cur = [], spec.recipe_name
        while cur is not None:
            chain.append(f"detection.recipes.{cur}")
            cur = params["detection"]["recipes"][cur].get("inherit")
        gi = _group_index(params["profiles"][p]["detection"], spec.group)
        own = [f"attentions.{spec.attention_label}", f"profiles.{p}.detection.{gi}"] \
            + _optional_keys(params, p, ["gpus_per_run", "threads", "kernels"])
        train_keys, eval_keys = [], []
        for link in chain[::-1]:
            inherit = _present(params, [f"{link}.inherit"])
            train_keys += inherit + _leaves(params, f"{link}.train", NOT_IN_FINGERPRINT)
            eval_keys += inherit + _leaves(params, f"{link}.train")
        train_keys, eval_keys = train_keys + own, eval_keys + own
        source = [spec.backbone_from["file"]] if spec.backbone_from else []
        log = f"logs/{p}/detect_train/{rid}.log"
        out.append(Stage(
            name=f"detect_train-{rid}", kind="detect_train", wildcards={"detrun": rid},
            cmd=_cmd("detect_train", ["--params", pp, "--profile", p, "--run", rid], log, gpus=spec.gpus, threads=nt,
                     kernels=kern),
            deps=tuple([spec.prepared_dir.as_posix()] + source + code["detect_train"]),
            outs=(f"{run_dir}/model.safetensors", f"{run_dir}/train.json"), plots=(f"{run_dir}/log.csv",),
            params=tuple(train_keys), log=log, resources={"gpu": use_gpu * spec.gpus}, threads=nt,
            reads=_reads(params, train_keys, threads=nt)))
        log = f"logs/{p}/detect_evaluate/{rid}.log"
        out.append(Stage(
            name=f"detect_evaluate-{rid}", kind="detect_evaluate", wildcards={"detrun": rid},
            cmd=_cmd("detect_evaluate", ["--params", pp, "--profile", p, "--run", rid], log, threads=nt,
                     kernels=kern),
            deps=tuple([spec.prepared_dir.as_posix(), f"{run_dir}/model.safetensors", f"{run_dir}/train.json"]
                       + code["detect_evaluate"]),
            # metrics.json (box / mask AP) is a plain output: `dvc metrics show` keeps the classification runs'
            # five short columns (tests/pipeline/test_dvc_artifacts.py: the table fits a terminal)
            outs=(f"{run_dir}/eval.json", f"{run_dir}/metrics.json"), params=tuple(eval_keys), log=log,
            resources={"gpu": use_gpu}, threads=nt, reads=_reads(params, eval_keys, threads=nt)))
    return out


def by_name(stage_list: list[Stage]) -> dict[str, Stage]:
    return {s.name: s for s in stage_list}


def detect_gpus() -> int:
    """GPUs this machine offers to the workflow (honours CUDA_VISIBLE_DEVICES; no torch import)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    try:
        import subprocess
        res = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return len([line for line in res.stdout.splitlines() if line.strip()]) if res.returncode == 0 else 0
    except (OSError, subprocess.SubprocessError):
        return 0


__all__ = ["CODE", "DEFAULT_THREADS", "EVAL_ONLY_TRAIN_KEYS", "LIGHT_ANALYSES", "MODEL_FREE_ANALYSES", "Stage", "TORCH_KINDS", "by_name", "code_files", "source_files",
           "detect_gpus", "param_value", "profile_kernels", "profile_threads", "stages"]
