"""Adopt outputs that Snakemake made into DVC's dvc.lock, checked, without re-running anything.

    python -m karat dvc-yaml --profile ci --write      # dvc.yaml of the profile Snakemake ran
    python -m karat adopt-dvc --profile ci             # check each stage's outputs, then `dvc commit` them

After a Snakemake run, DVC has no record of the outputs (dvc.lock), so `dvc status` calls every stage changed
and `dvc repro` would delete and remake all of them, retraining every run. A bare `dvc commit -f` would record
whatever is on disk, a damaged or stale file included. This command commits a stage only when

* every output exists and is whole: weights (also those inside snapshot folders) pass their own checksum,
  JSON files parse, a prepared data folder matches its manifest's checksums, a fetched data folder its
  FETCHED.json, every other file or folder is non-empty;
* a run's ``train.json`` / ``eval.json`` was made by the configuration params.yaml gives it now (train: less
  the keys that do not change the weights) and, where it recorded one, with the profile's thread count;
* every input exists and every stage that makes one of its inputs was adopted too (or is already in dvc.lock).

Stages whose outputs do not exist yet are skipped (``dvc repro`` makes them); a stage that fails a check is
refused with the reason and what to do, never committed, and neither are the stages downstream of it. The
modification times of the adopted files are put back after ``dvc commit`` (which may replace files by copies
from its cache), so Snakemake does not see newer inputs and rerun jobs after the adoption.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from karat.config import DEFAULT_PARAMS, load_profile
from karat.errors import CorruptArtifactError, KaratError
from karat.pipeline import EVAL_ONLY_TRAIN_KEYS, Stage, stages
from karat.utils.io import read_json

REMEDY = "Delete it and let `dvc repro` (or Snakemake) make it again."


class AdoptionError(KaratError):
    """dvc.yaml is not the profile's, or `dvc commit` failed."""


@dataclass
class Outcome:
    adopted: list = field(default_factory=list)     # stage names committed
    skipped: dict = field(default_factory=dict)     # stage -> why (outputs not made yet, upstream not adopted)
    refused: dict = field(default_factory=dict)     # stage -> what is wrong (a damaged or stale output)


def _check_file(path: Path) -> None:
    if path.suffix == ".safetensors":
        from karat.training import checkpoint as ckpt
        ckpt.verify_weights(path)
    elif path.suffix == ".json":
        read_json(path, REMEDY)
    elif path.stat().st_size == 0:
        raise CorruptArtifactError(f"{path} is empty. {REMEDY}")


def check_output(path: str | os.PathLike) -> None:
    """Raise CorruptArtifactError (naming the file) unless ``path`` is a whole artifact."""
    path = Path(path)
    if path.is_file():
        _check_file(path)
        return
    if not path.is_dir() or not any(path.iterdir()):
        raise CorruptArtifactError(f"{path} is missing or empty. {REMEDY}")
    parts = path.parts
    if parts[:2] == ("data", "raw") and (path / "FETCHED.json").is_file():
        record = read_json(path / "FETCHED.json", REMEDY)
        try:
            if isinstance(record, dict) and "annotations" in record:   # a detection set (COCO format)
                from karat.data.coco import read_coco_fetched
                read_coco_fetched(path)
            else:
                from karat.data.fetch import verify_record
                verify_record(record, path, log=lambda *a, **k: None)
        except (OSError, ValueError, KaratError) as exc:
            if isinstance(exc, CorruptArtifactError):
                raise
            raise CorruptArtifactError(str(exc)) from None
        return
    if parts[:2] == ("data", "prepared") and (path / "manifest.json").is_file():
        manifest = read_json(path / "manifest.json", REMEDY)
        from karat.data.coco import FORMAT as COCO_FORMAT
        if isinstance(manifest, dict) and str(manifest.get("format", "")).startswith("karat-coco"):
            from karat.data.coco import load_coco_prepared
            try:   # a prepared detection set: its own manifest (files and their sha256), of this version
                load_coco_prepared(path, verify=True)
            except KaratError as exc:
                if isinstance(exc, CorruptArtifactError):
                    raise
                raise CorruptArtifactError(f"{exc} (this version prepares {COCO_FORMAT!r})") from None
        elif isinstance(manifest, dict) and isinstance(manifest.get("splits"), dict):
            from karat.data.prepare import verify_prepared
            verify_prepared(path, manifest)
        else:
            raise CorruptArtifactError(f"{path / 'manifest.json'} is not a prepared-data manifest. {REMEDY}")
        return
    for sub in sorted(path.rglob("*")):
        if sub.is_file() and sub.name != ".snakemake_timestamp":
            _check_file(sub)


def _normal(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _without_eval_keys(config: dict) -> dict:
    config = _normal(config)
    train = (config.get("recipe") or {}).get("train") or {}
    for key in EVAL_ONLY_TRAIN_KEYS:
        train.pop(key, None)
    return config


def check_configuration(stage: Stage, prof, threads: int) -> None:
    """A run's train.json / eval.json must come from the configuration params.yaml gives the run now."""
    if stage.kind not in ("train", "evaluate"):
        return
    spec = prof.runs[stage.wildcards["run"]]
    name = "train.json" if stage.kind == "train" else "eval.json"
    path = Path(spec.out_dir) / name
    record = read_json(path, REMEDY)
    want, got = spec.to_dict(), record.get("config") or {}
    if stage.kind == "train":
        want, got = _without_eval_keys(want), _without_eval_keys(got)
    else:
        want, got = _normal(want), _normal(got)
    if want != got:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise CorruptArtifactError(f"{path} was made with another configuration than params.yaml gives run "
                                   f"{spec.run_id} now (differs in: {', '.join(diff)}); adopting it would record "
                                   f"a stale result as current. `dvc repro` makes it again.")
    recorded = (record.get("provenance") or {}).get("threads")
    if recorded is not None and int(recorded) != threads:
        raise CorruptArtifactError(f"{path} was computed with {recorded} torch threads and the profile runs "
                                   f"{threads} (profiles.{prof.name}.threads): on the CPU the numbers differ. "
                                   f"`dvc repro` makes it again with {threads}.")


def _locked(lock_path: Path) -> set[str]:
    if not lock_path.is_file():
        return set()
    import yaml
    return set((yaml.safe_load(lock_path.read_text()) or {}).get("stages", {}) or {})


def plan(profile: str | None = None, params_path: str = DEFAULT_PARAMS, root: str | os.PathLike = ".") -> tuple:
    """Which stages can be adopted (in DAG order), skipped and refused; checks only, changes nothing."""
    from karat.pipeline import profile_threads
    from karat.config import load_params

    root = Path(root)
    prof = load_profile(params_path, profile)
    threads = profile_threads(load_params(params_path), prof.name)
    all_stages = stages(prof.name, params_path)
    producer = {out: s.name for s in all_stages for out in s.all_outputs}
    locked = _locked(root / "dvc.lock")
    result, ok = Outcome(), set(locked)
    for st in all_stages:
        missing = [o for o in st.all_outputs if not (root / o).exists()]
        if missing:
            result.skipped[st.name] = f"not made yet: {missing[0]}" + (f" (+{len(missing) - 1})" if len(missing) > 1 else "")
            continue
        upstream = [producer[d] for d in st.deps if d in producer and producer[d] not in ok]
        if upstream:
            bad = upstream[0]
            why = "refused" if bad in result.refused else "not adopted"
            (result.refused if bad in result.refused else result.skipped)[st.name] = f"its input stage {bad} is {why}"
            continue
        absent = [d for d in st.deps if not (root / d).exists()]
        if absent:
            result.skipped[st.name] = f"input {absent[0]} does not exist"
            continue
        try:
            for out in st.all_outputs:
                check_output(root / out)
            check_configuration(st, prof, threads)
        except (CorruptArtifactError, OSError, ValueError) as exc:
            result.refused[st.name] = str(exc)
            continue
        result.adopted.append(st.name)
        ok.add(st.name)
    return result, all_stages


def _mtimes(paths) -> dict[Path, tuple[int, int]]:
    out = {}
    for p in paths:
        p = Path(p)
        for f in ([p] + sorted(p.rglob("*")) if p.is_dir() else [p]):
            st = f.stat()
            out[f] = (st.st_atime_ns, st.st_mtime_ns)
    return out


def adopt(profile: str | None = None, params_path: str = DEFAULT_PARAMS, dvc: str = "dvc",
          dry_run: bool = False) -> Outcome:
    """Check every stage's outputs and `dvc commit` the stages that pass (see the module docstring)."""
    from karat.pipeline.dvc import render

    prof = load_profile(params_path, profile)
    current = Path("dvc.yaml").read_text() if Path("dvc.yaml").is_file() else ""
    if current != render(prof.name, params_path):
        raise AdoptionError(f"dvc.yaml is not the current one of profile {prof.name!r}: run `python -m karat "
                            f"dvc-yaml --profile {prof.name} --params {params_path} --write` first")
    result, all_stages = plan(prof.name, params_path)
    if dry_run or not result.adopted:
        return result
    by_name = {s.name: s for s in all_stages}
    times = _mtimes(o for name in result.adopted for o in by_name[name].all_outputs)
    # `dvc commit A B C` commits one target at a time and rewrites dvc.lock after each (its round-trip YAML reader
    # and writer on a lock file that grows): 68 s of CPU for the ci profile's 49 stages. Where every stage of
    # dvc.yaml passed, the file as the one target commits them all with one write, to the same dvc.lock byte for
    # byte, in 19 s (2026-12-08, 2-core AMD EPYC: `time dvc commit --force --quiet <the 49 names>` against
    # `time dvc commit --force --quiet dvc.yaml` in a copy of the tests' DVC run, dvc.lock and .dvc/cache removed).
    targets = ["dvc.yaml"] if set(result.adopted) == set(by_name) else list(result.adopted)
    res = subprocess.run([dvc, "commit", "--force", "--quiet", *targets], capture_output=True, text=True)
    for f, (atime, mtime) in times.items():   # Snakemake decides by modification times: leave them as they were
        if f.exists() and not f.is_symlink():
            os.utime(f, ns=(atime, mtime))
    if res.returncode != 0:
        raise AdoptionError(f"`dvc commit` failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return result


def report(result: Outcome) -> str:
    lines = [f"adopted {len(result.adopted)} stage(s) into dvc.lock"]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} (dvc repro makes them): "
                     + "; ".join(f"{k}: {v}" for k, v in list(result.skipped.items())[:5])
                     + (" ..." if len(result.skipped) > 5 else ""))
    for name, why in result.refused.items():
        lines.append(f"refused {name}: {why}")
    return "\n".join(lines)


__all__ = ["AdoptionError", "Outcome", "adopt", "check_configuration", "check_output", "plan", "report"]
