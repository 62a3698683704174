"""The DAG of one profile, as data: the single description both orchestrators are built from.

`stages(profile)` lists every job of a profile (fetch -> prepare -> train -> evaluate -> analyze -> report)
with its command, inputs, outputs, params.yaml keys, log, metrics and plots. The Snakefile's rules look
their jobs up here, and `dvc.yaml` is generated from it (`python -m karat dvc-yaml`), so neither DAG is
written twice by hand and the parity test can compare them job by job.

Imports no torch: Snakemake evaluates this on every invocation.
"""
from __future__ import annotations

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

    @property
    def all_outputs(self) -> tuple:
        return tuple(self.outs) + tuple(self.metrics) + tuple(self.plots)


def code_files(kind: str, root: Path = REPO_ROOT) -> list[str]:
    """The source files a stage kind depends on (sorted, relative to the repository root)."""
    files: set[str] = set()
    for entry in CODE[kind]:
        path = root / entry
        if path.is_file():
            files.add(entry)
        elif path.is_dir():
            files.update(str(p.relative_to(root)) for p in path.rglob("*")
                         if p.is_file() and p.suffix in (".py", ".yaml", ".json", ".csv")
                         and "__pycache__" not in p.parts)
    return sorted(files)


def _cmd(stage: str, args: list[str], log: str, gpus: int = 1) -> str:
    launcher = ["python", "-m", "karat"]
    if gpus > 1:  # one data-parallel job over several GPUs of one node
        launcher = ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "karat"]
    return " ".join(shlex.quote(a) for a in launcher + [stage] + args + ["--log", log])


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


def _run_params(params: dict, spec: RunSpec) -> list[str]:
    keys = [f"recipes.{name}" for name in recipe_chain(params, spec.recipe_name)]
    keys.append(f"attentions.{spec.attention_label}")
    keys.append(f"datasets.{spec.dataset}.num_classes")
    keys += _optional_keys(params, spec.profile, ["model_overrides", "overrides", "gpus_per_run"])
    if spec.derived_from:
        # the group's finetune_from / attention_from options; the teacher's attention (it builds the teacher)
        keys.append(f"profiles.{spec.profile}.groups")
        if spec.attention_from:
            keys.append(f"attentions.{spec.attention_from['teacher']['attention_label']}")
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

    fetched = set()
    for need in prof.datasets.values():
        if need.dataset not in fetched:
            fetched.add(need.dataset)
            log = f"logs/data/fetch-{need.dataset}.log"
            out.append(Stage(
                name=f"fetch-{need.dataset}", kind="fetch", wildcards={"dataset": need.dataset},
                cmd=_cmd("fetch", ["--params", pp, "--dataset", need.dataset], log),
                deps=tuple(_local_sources(need.spec) + code["fetch"]), outs=(str(need.raw_dir),),
                params=(f"datasets.{need.dataset}",), log=log))
        log = f"logs/data/prepare-{need.dataset}-{need.subset}.log"
        out.append(Stage(
            name=f"prepare-{need.dataset}-{need.subset}", kind="prepare",
            wildcards={"dataset": need.dataset, "subset": need.subset},
            cmd=_cmd("prepare", ["--params", pp, "--dataset", need.dataset, "--subset", need.subset], log),
            deps=tuple([str(need.raw_dir)] + code["prepare"]), outs=(str(need.prepared_dir),),
            params=(f"subsets.{need.subset}",), log=log))

    for rid, spec in prof.runs.items():
        run_dir = spec.out_dir.as_posix()
        res = {"gpu": use_gpu * spec.gpus}
        log = f"logs/{p}/train/{rid}.log"
        out.append(Stage(
            name=f"train-{rid}", kind="train", wildcards={"run": rid},
            cmd=_cmd("train", ["--params", pp, "--profile", p, "--run", rid], log, gpus=spec.gpus),
            deps=tuple([str(spec.prepared_dir)] + _source_weights(spec) + code["train"]),
            outs=tuple(f"{run_dir}/{w}" for w in RUN_WEIGHTS) + (f"{run_dir}/train.json", f"{run_dir}/snapshots"),
            plots=(f"{run_dir}/log.csv",),
            params=tuple(_run_params(params, spec)), log=log, resources=res))
        log = f"logs/{p}/evaluate/{rid}.log"
        out.append(Stage(
            name=f"evaluate-{rid}", kind="evaluate", wildcards={"run": rid},
            cmd=_cmd("evaluate", ["--params", pp, "--profile", p, "--run", rid], log),
            deps=tuple([str(spec.prepared_dir)] + [f"{run_dir}/{w}" for w in RUN_WEIGHTS]
                       + [f"{run_dir}/train.json"] + _source_weights(spec, evaluate=True) + code["evaluate"]),
            outs=(f"{run_dir}/eval.json",), metrics=(f"{run_dir}/metrics.json",),
            params=tuple(_run_params(params, spec)), log=log,
            resources={"gpu": use_gpu}))

    analysis_dirs = []
    for aname, run_ids in prof.analyses.items():
        akey = f"profiles.{p}.analyses.{aname}"
        if aname == "compute":
            adir = (prof.results_dir / "analysis" / "compute").as_posix()
            log = f"logs/{p}/analyze/compute.log"
            out.append(Stage(
                name="analyze-compute", kind="analyze", wildcards={"analysis": "compute", "run": "all"},
                cmd=_cmd("analyze", ["compute", "--params", pp, "--profile", p], log),
                deps=tuple(code["analyze"]), outs=(adir,), params=(akey,), log=log,
                resources={"gpu": use_gpu}))
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
            out.append(Stage(
                name=f"analyze-{aname}-{rid}", kind="analyze", wildcards={"analysis": aname, "run": rid},
                cmd=_cmd("analyze", [aname, "--params", pp, "--profile", p, "--run", rid], log),
                deps=tuple(run_inputs + data_inputs + code["analyze"]), outs=(adir,),
                params=(akey,), log=log, resources={"gpu": use_gpu if aname == "landscape" else 0}))
            analysis_dirs.append(adir)

    out += _detection_stages(params, prof, pp, code, use_gpu)

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
        params=(f"profiles.{p}",), log=log))
    return out


def _detection_stages(params: dict, prof: Profile, pp: str, code: dict, use_gpu: int) -> list[Stage]:
    """ViT-Det (PAPER §3.5): detect_fetch -> detect_prepare per data set, detect_train -> detect_evaluate per
    run; a run initialised from a classification run depends on that run's weights file."""
    from karat.config.detection import DetectionRunSpec

    p, out = prof.name, []
    for ds, need in prof.detection_data.items():
        gen = need.spec.get("generate") or {}
        local = _local_sources({"local": [gen["source"]]}) if gen.get("source") else _local_sources(need.spec)
        log = f"logs/data/detect_fetch-{ds}.log"
        out.append(Stage(
            name=f"detect_fetch-{ds}", kind="detect_fetch", wildcards={"detset": ds},
            cmd=_cmd("detect_fetch", ["--params", pp, "--dataset", ds], log),
            deps=tuple(local + code["detect_fetch"]), outs=(str(need.raw_dir),),
            params=(f"detection.datasets.{ds}",), log=log))
        log = f"logs/data/detect_prepare-{ds}-s{need.spec['max_size']}.log"
        out.append(Stage(
            name=f"detect_prepare-{ds}", kind="detect_prepare", wildcards={"detset": ds},
            cmd=_cmd("detect_prepare", ["--params", pp, "--dataset", ds], log),
            deps=tuple([str(need.raw_dir)] + code["detect_prepare"]), outs=(need.prepared_dir.as_posix(),),
            params=(f"detection.datasets.{ds}",), log=log))
    for rid, spec in prof.detection.items():
        spec: DetectionRunSpec
        run_dir = spec.out_dir.as_posix()
        chain, cur = [], spec.recipe_name
        while cur is not None:
            chain.append(f"detection.recipes.{cur}")
            cur = params["detection"]["recipes"][cur].get("inherit")
        keys = tuple(chain[::-1] + [f"attentions.{spec.attention_label}", f"profiles.{p}.detection"]
                     + _optional_keys(params, p, ["gpus_per_run"]))
        source = [spec.backbone_from["file"]] if spec.backbone_from else []
        log = f"logs/{p}/detect_train/{rid}.log"
        out.append(Stage(
            name=f"detect_train-{rid}", kind="detect_train", wildcards={"detrun": rid},
            cmd=_cmd("detect_train", ["--params", pp, "--profile", p, "--run", rid], log, gpus=spec.gpus),
            deps=tuple([spec.prepared_dir.as_posix()] + source + code["detect_train"]),
            outs=(f"{run_dir}/model.safetensors", f"{run_dir}/train.json"), plots=(f"{run_dir}/log.csv",),
            params=keys, log=log, resources={"gpu": use_gpu * spec.gpus}))
        log = f"logs/{p}/detect_evaluate/{rid}.log"
        out.append(Stage(
            name=f"detect_evaluate-{rid}", kind="detect_evaluate", wildcards={"detrun": rid},
            cmd=_cmd("detect_evaluate", ["--params", pp, "--profile", p, "--run", rid], log),
            deps=tuple([spec.prepared_dir.as_posix(), f"{run_dir}/model.safetensors", f"{run_dir}/train.json"]
                       + code["detect_evaluate"]),
            # metrics.json (box / mask AP) is a plain output: `dvc metrics show` keeps the classification runs'
            # five short columns (tests/pipeline/test_dvc_artifacts.py: the table fits a terminal)
            outs=(f"{run_dir}/eval.json", f"{run_dir}/metrics.json"), params=keys, log=log,
            resources={"gpu": use_gpu}))
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


__all__ = ["CODE", "Stage", "by_name", "code_files", "detect_gpus", "stages"]
