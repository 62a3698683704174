"""params.yaml: loading, validation and expansion of a profile into runs.

params.yaml is the single source of truth of the experiment grid: both orchestrators (Snakemake and DVC)
and every stage read it through this module. Nothing here imports torch, so that an orchestrator that
only asks "what is the DAG?" answers in well under a second.

A profile is a list of groups; a group is a matrix datasets x models x attentions x seeds trained with one
recipe. Each cell becomes a :class:`RunSpec` with the id ``<dataset>-<model>-<attention>-s<seed>``.
"""
from __future__ import annotations

import copy
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import KaratError
from . import transfer  # noqa: E402  (torch-free)

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")
DEFAULT_PARAMS = "params.yaml"
ANALYSES_PER_RUN = ("landscape", "weights", "attention_maps", "spectra", "curves", "functions")
ANALYSES = ANALYSES_PER_RUN + ("compute",)
# The models this package registers (karat.models); checked here without importing torch.
MODEL_PATTERN = re.compile(r"^vit_(tiny|small|base)_patch(16_224|4_32)$")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ParamsError(KaratError, ValueError):
    """params.yaml is invalid; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a stage needs to train, evaluate or analyse one run."""

    run_id: str
    profile: str
    group: str
    model: str
    attention: Any                 # "softmax", a label such as "G3B", or a dict for create_model
    attention_label: str
    dataset: str
    subset: str
    prepared_dir: Path
    num_classes: int
    seed: int
    recipe_name: str
    recipe: dict                   # {"train": {...}, "data": {...}}, inheritance and overrides applied
    model_kwargs: dict = field(default_factory=dict)
    gpus: int = 1
    out_dir: Path = Path()
    state_dir: Path = Path()
    # Runs that start from other runs (karat.config.transfer): the resolved source, None when from scratch.
    finetune_from: dict | None = None
    attention_from: dict | None = None

    @property
    def is_kan(self) -> bool:
        return self.attention != "softmax"

    @property
    def derived_from(self) -> list[str]:
        """The runs whose weights this run reads (upstream of a fine-tune, teacher of an attention transfer)."""
        return [src["run"] for src in (self.finetune_from, self.attention_from) if src]

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "profile": self.profile, "group": self.group, "model": self.model,
            "attention": copy.deepcopy(self.attention), "attention_label": self.attention_label,
            "dataset": self.dataset, "subset": self.subset, "prepared_dir": str(self.prepared_dir),
            "num_classes": self.num_classes, "seed": self.seed, "recipe_name": self.recipe_name,
            "recipe": copy.deepcopy(self.recipe), "model_kwargs": copy.deepcopy(self.model_kwargs),
            "gpus": self.gpus, "out_dir": str(self.out_dir), "state_dir": str(self.state_dir),
            # only when set: the configuration of every from-scratch run stays what it was
            **{k: copy.deepcopy(v) for k, v in (("finetune_from", self.finetune_from),
                                                ("attention_from", self.attention_from)) if v},
        }


@dataclass(frozen=True)
class DatasetNeed:
    """A (dataset, subset) pair that the runs of a profile need prepared."""

    dataset: str
    subset: str
    spec: dict
    subset_spec: dict

    @property
    def raw_dir(self) -> Path:
        return Path("data/raw") / self.dataset

    @property
    def prepared_dir(self) -> Path:
        return Path("data/prepared") / self.dataset / self.subset


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    params_path: Path
    runs: dict                       # run_id -> RunSpec (ordered as in params.yaml)
    datasets: dict                   # "dataset/subset" -> DatasetNeed
    analyses: dict                   # analysis name -> list of run ids (compute: [])
    analysis_options: dict           # analysis name -> options (without "runs")
    raw: dict                        # the profile's own section of params.yaml
    # ViT-Det runs (karat.config.detection): run id -> DetectionRunSpec; data set -> DetectionDataNeed
    detection: dict = field(default_factory=dict)
    detection_data: dict = field(default_factory=dict)
    scale: str = "paper"             # CI | demo | reduced | paper (params.schema.yaml); the report marks tables

    @property
    def results_dir(self) -> Path:
        return Path("results") / self.name

    @property
    def runs_dir(self) -> Path:
        return Path("runs") / self.name


# --------------------------------------------------------------------------------------------------
# loading and validation

def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    """Read params.yaml and validate its structure and cross-references; raise ParamsError if invalid."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {str(path)!r} does not exist (run from the repository root or pass "
                          f"--params)")
    return _load_params_cached(str(path.resolve()), path.stat().st_mtime_ns)


#: libyaml's parser where PyYAML has it (its wheels do), with PyYAML's safe constructor: the same objects as
#: yaml.safe_load (tests/pipeline/test_config.py compares the two on params.yaml) in a tenth of the time. The
#: pure-Python parser took about 0.5 s of every stage's and every Snakemake job's start on a 2-core machine.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_load(stream):
    """``yaml.safe_load`` through :data:`SAFE_LOADER`."""
    return yaml.load(stream, Loader=SAFE_LOADER)


@functools.lru_cache(maxsize=8)
def _load_params_cached(path: str, _mtime: int) -> dict:
    with open(path, encoding="utf-8") as fh:
        try:
            params = yaml_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    validate_params(params)
    return params


def validate_params(params: Any) -> None:
    _validate_schema(params)
    _validate_references(params)


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml_load(fh)


def _validate_schema(params: Any) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for err in errors[:10]:
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
            lines.append(f"{key}: unknown key(s) {extra}; allowed: {allowed}")
        else:
            lines.append(f"{key}: {err.message}")
    raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(lines))


def _validate_references(params: dict) -> None:
    datasets, subsets = params["datasets"], params["subsets"]
    recipes, attentions = params["recipes"], params["attentions"]
    if params["profile"] not in params["profiles"]:
        raise ParamsError(f"profile: {params['profile']!r} is not a profile; allowed: "
                          f"{sorted(params['profiles'])}")
    for name in recipes:
        _recipe_chain(recipes, name)  # raises on unknown parents and cycles
    for name in recipes:
        validate_recipe(f"recipes.{name}", resolve_recipe(params, name))
    if params.get("detection"):
        from .detection import resolve_recipe as detection_recipe, validate_datasets
        validate_datasets(params["detection"])
        for name in params["detection"].get("recipes", {}):
            detection_recipe(params["detection"], name, f"detection.recipes.{name}")
    if "tracking" in params:
        from karat.training.tracking import TrackingError, tracking_config  # no torch import
        try:
            tracking_config(params["tracking"])
        except TrackingError as exc:
            raise ParamsError(str(exc)) from None
    from karat.attention.config import parse_attention  # no torch import
    for label, spec in attentions.items():
        try:
            parse_attention(spec)
        except ValueError as exc:
            raise ParamsError(f"attentions.{label}: {exc}") from None
    for pname, prof in params["profiles"].items():
        where = f"profiles.{pname}"
        if prof["subset"] not in subsets:
            raise ParamsError(f"{where}.subset: {prof['subset']!r} is not a subset; allowed: {sorted(subsets)}")
        names = set()
        for gi, group in enumerate(prof["groups"]):
            gw = f"{where}.groups[{gi}]"
            if group["name"] in names:
                raise ParamsError(f"{gw}.name: {group['name']!r} is used twice in profile {pname!r}")
            names.add(group["name"])
            _check_members(f"{gw}.datasets", group["datasets"], datasets)
            _check_members(f"{gw}.attentions", group["attentions"], attentions)
            if group["recipe"] not in recipes:
                raise ParamsError(f"{gw}.recipe: {group['recipe']!r} is not a recipe; allowed: {sorted(recipes)}")
            from .models import ALLOWED as _allowed_models, is_model_name
            for model in group["models"]:
                if not is_model_name(model):
                    raise ParamsError(f"{gw}.models: {model!r} is not a known model; allowed: {_allowed_models}")
        by_dataset = prof.get("overrides", {}).get("by_dataset", {})
        _check_members(f"{where}.overrides.by_dataset", list(by_dataset), datasets)
        for gi, group in enumerate(prof.get("detection", [])):
            if group.get("recipe") not in (params.get("detection") or {}).get("recipes", {}):
                raise ParamsError(f"{where}.detection[{gi}].recipe: {group.get('recipe')!r} is not a detection recipe; "
                                  f"allowed: {sorted((params.get('detection') or {}).get('recipes', {}))}")
        compute = prof.get("analyses", {}).get("compute")
        if compute:
            _check_members(f"{where}.analyses.compute.attentions", compute["attentions"], attentions)
            for model in compute["models"]:
                if not MODEL_PATTERN.match(model):
                    raise ParamsError(f"{where}.analyses.compute.models: {model!r} is not a known model")


def validate_recipe(where: str, recipe: dict) -> None:
    """Each part validates its own section strictly (unknown keys, wrong values) before any work starts."""
    from karat.data.recipe import validate_data_recipe
    checks = [("data", validate_data_recipe)]
    try:  # the training engine's validator (no torch import at module level)
        from karat.training.recipe import validate_train_recipe
        checks.append(("train", validate_train_recipe))
    except ImportError:
        pass
    for section, check in checks:
        try:
            check(dict(recipe.get(section, {})))
        except ValueError as exc:
            raise ParamsError(f"{where}.{section}: {exc}") from None


def _check_members(where: str, values: list, allowed: dict) -> None:
    for value in values:
        if value not in allowed:
            raise ParamsError(f"{where}: {value!r} is not defined; allowed: {sorted(allowed)}")


def _recipe_chain(recipes: dict, name: str) -> list[str]:
    """Names from the root ancestor down to ``name``."""
    chain, seen = [], set()
    while name is not None:
        if name in seen:
            raise ParamsError(f"recipes.{name}.inherit: inheritance cycle through {sorted(seen)}")
        if name not in recipes:
            raise ParamsError(f"recipes.{chain[-1] if chain else name}.inherit: {name!r} is not a recipe; "
                              f"allowed: {sorted(recipes)}")
        seen.add(name)
        chain.append(name)
        name = recipes[name].get("inherit")
    return chain[::-1]


def recipe_chain(params: dict, name: str) -> list[str]:
    return _recipe_chain(params["recipes"], name)


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_recipe(params: dict, name: str, profile: str | None = None, dataset: str | None = None) -> dict:
    """The recipe ``name`` with inheritance, then the profile's overrides (and per-dataset ones) applied."""
    recipe: dict = {"train": {}, "data": {}}
    for link in recipe_chain(params, name):
        section = params["recipes"][link]
        recipe = deep_merge(recipe, {"train": section.get("train", {}), "data": section.get("data", {})})
    if profile is not None:
        overrides = params["profiles"][profile].get("overrides", {})
        recipe = deep_merge(recipe, {k: v for k, v in overrides.items() if k in ("train", "data")})
        if dataset is not None:
            recipe = deep_merge(recipe, overrides.get("by_dataset", {}).get(dataset, {}))
    return recipe


def attention_spec(params: dict, label: str) -> Any:
    value = params["attentions"][label]
    return copy.deepcopy(value)


# --------------------------------------------------------------------------------------------------
# profiles

def profile_name(params: dict, profile: str | None) -> str:
    name = profile or os.environ.get("KARAT_PROFILE") or params["profile"]
    if name not in params["profiles"]:
        raise ParamsError(f"profile: {name!r} is not a profile of params.yaml; allowed: {sorted(params['profiles'])}")
    return name


def load_profile(path: str | os.PathLike = DEFAULT_PARAMS, profile: str | None = None) -> Profile:
    params = load_params(path)
    return expand_profile(params, profile_name(params, profile), params_path=Path(path))


def expand_profile(params: dict, name: str, params_path: Path = Path(DEFAULT_PARAMS)) -> Profile:
    prof = params["profiles"][name]
    subset = prof["subset"]
    runs: dict[str, RunSpec] = {}
    datasets: dict[str, DatasetNeed] = {}
    pending: dict[str, tuple] = {}   # derived run id -> (kind, where, source, upstream id)
    for gi, group in enumerate(prof["groups"]):
        kinds = [k for k in ("finetune_from", "attention_from") if k in group]
        if len(kinds) > 1:
            raise ParamsError(f"profiles.{name}.groups[{gi}]: a group has at most one of finetune_from and "
                              f"attention_from")
        for dataset in group["datasets"]:
            need = DatasetNeed(dataset, subset, copy.deepcopy(params["datasets"][dataset]),
                               copy.deepcopy(params["subsets"][subset]))
            datasets.setdefault(f"{dataset}/{subset}", need)
            recipe = resolve_recipe(params, group["recipe"], name, dataset)
            validate_recipe(f"profiles.{name} (recipe {group['recipe']!r} for {dataset}, with overrides)", recipe)
            for model in group["models"]:
                _check_overrides(name, prof, group, model, f"{dataset}-{model}-{group['attentions'][0]}-"
                                                           f"s{group['seeds'][0]}")
                for label in group["attentions"]:
                    for seed in group["seeds"]:
                        run_id = f"{dataset}-{model}-{label}-s{seed}"
                        source = None
                        if kinds:
                            kind = kinds[0].split("_")[0]
                            where = f"profiles.{name}.groups[{gi}].{kinds[0]}"
                            up = transfer.upstream_id(where, kind, group[kinds[0]], dataset, model, label, seed,
                                                      params["datasets"], params["attentions"])
                            run_id = transfer.derived_id(run_id, dataset, model, kind, group[kinds[0]], up)
                            source = (kind, where, group[kinds[0]], up)
                        if not RUN_ID_PATTERN.match(run_id):
                            raise ParamsError(f"run id {run_id!r} has characters outside [A-Za-z0-9_.-]")
                        if run_id in runs:
                            # Tables share runs (Table 1's G3B is also Table 15's): one run, trained once.
                            if runs[run_id].recipe != recipe or pending.get(run_id, (None,) * 4)[2:] != \
                                    (source or (None,) * 4)[2:]:
                                raise ParamsError(
                                    f"profiles.{name}.groups[{group['name']}]: run {run_id!r} is already "
                                    f"defined by group {runs[run_id].group!r} with another recipe")
                            continue
                        runs[run_id] = RunSpec(
                            run_id=run_id, profile=name, group=group["name"], model=model,
                            attention=attention_spec(params, label), attention_label=label,
                            dataset=dataset, subset=subset, prepared_dir=need.prepared_dir,
                            num_classes=params["datasets"][dataset]["num_classes"], seed=seed,
                            recipe_name=group["recipe"], recipe=copy.deepcopy(recipe),
                            model_kwargs=copy.deepcopy(_model_overrides(name, prof, group)[1]),
                            gpus=prof.get("gpus_per_run", 1),
                            out_dir=Path("runs") / name / run_id,
                            state_dir=Path(".karat_state") / name / run_id)
                        if source:
                            pending[run_id] = source
    _resolve_derived(name, prof, params, runs, pending)
    _check_runs_fit(name, prof, params, runs)
    from .detection import detection_runs
    det_runs, det_data = detection_runs(params, name, runs)
    analyses, options = {}, {}
    for aname, spec in prof.get("analyses", {}).items():
        opts = {k: copy.deepcopy(v) for k, v in spec.items() if k != "runs"}
        _check_analysis_options(name, aname, opts)
        options[aname] = opts
        analyses[aname] = [] if aname == "compute" else _select_runs(name, aname, spec["runs"], runs)
    return Profile(name=name, description=prof.get("description", ""), params_path=params_path, runs=runs,
                   datasets=datasets, analyses=analyses, analysis_options=options, raw=copy.deepcopy(prof),
                   detection=det_runs, detection_data=det_data,
                   scale=prof.get("scale", "paper" if name == "paper" else "reduced"))


def _model_overrides(name: str, prof: dict, group: dict) -> tuple[str, dict]:
    """(where they are written, the model_overrides) of a group's runs: the group's own, else the profile's."""
    if "model_overrides" in group:
        return f"profiles.{name}.groups[{group['name']}].model_overrides", group["model_overrides"] or {}
    return f"profiles.{name}.model_overrides", prof.get("model_overrides") or {}


def _check_overrides(name: str, prof: dict, group: dict, model: str, run_id: str) -> None:
    """Every model_overrides key must be a keyword that ``model``'s family takes (karat.config.models
    .check_overrides, read from the creators' code), refused here for every family: a misspelling would
    otherwise surface as ``unexpected keyword`` when the run's job starts, or, on a run another starts from,
    as "another architecture"."""
    from .models import check_overrides
    field, overrides = _model_overrides(name, prof, group)
    short = "model_overrides" if "model_overrides" in group else field
    try:
        check_overrides(model, overrides, field=short)
    except ValueError as exc:
        raise ParamsError(f"profiles.{name}.groups[{group['name']}] (model {model}, run {run_id}): {exc}") from None


def _resolve_derived(name: str, prof: dict, params: dict, runs: dict, pending: dict) -> None:
    """Fill in ``finetune_from`` / ``attention_from`` of the derived runs, upstream runs first."""
    import dataclasses

    left = dict(pending)
    while left:
        progressed = False
        for run_id, (kind, where, src, up) in list(left.items()):
            if up not in runs:
                raise ParamsError(f"{where}: run {run_id} starts from {up!r}, which is not a run of profile {name!r}; "
                                  f"add a group that trains it, or name another. Runs: {sorted(r for r in runs if r not in pending)}")
            if up == run_id:
                raise ParamsError(f"{where}: run {run_id} cannot start from itself")
            if up in left:
                continue
            spec, upstream = runs[run_id], runs[up]
            if kind == "finetune":
                resolved = dataclasses.replace(spec, finetune_from=transfer.resolve_finetune(where, src, spec, upstream))
            else:   # (each run's own model_overrides: a group's may differ from its teacher's)
                resolved = dataclasses.replace(
                    spec, attention_from=transfer.resolve_attention(where, src, spec, upstream))
            runs[run_id] = resolved
            del left[run_id]
            progressed = True
        if not progressed:
            raise ParamsError(f"profiles.{name}: runs start from each other in a cycle: {sorted(left)}")


def _train_images(params: dict, dataset: str, subset: dict) -> int | None:
    """Training images of ``dataset`` under ``subset`` (None when unknown before the data is fetched)."""
    spec = params["datasets"][dataset]
    if subset.get("train_per_class") is not None:
        return int(subset["train_per_class"]) * int(spec["num_classes"])
    if "expected_counts" in spec:
        return (spec["expected_counts"] or {}).get("train")
    from karat.data.sources import DATASETS  # torch-free
    info = DATASETS.get(dataset)
    return (info.counts or {}).get("train") if info is not None else None


def _check_runs_fit(name: str, prof: dict, params: dict, runs: dict) -> None:
    """What would otherwise fail only when a job runs, after earlier jobs spent their time: a batch larger
    than the training set (every family: the loader drops the last partial batch), model overrides that do not
    fit the model, hybrid heads that leave no KArAt head. (Unknown override keys: _check_overrides, earlier.)"""
    from karat.attention.config import check_heads, parse_attention  # no torch import
    from .models import model_config

    from .models import family
    groups = {g["name"]: g for g in prof["groups"]}
    for run in runs.values():
        where = f"profiles.{name}.groups[{run.group}] (run {run.run_id})"
        # every family: a batch larger than the training set gives no training step
        batch = run.recipe["train"]["batch_size"]
        n_train = _train_images(params, run.dataset, params["subsets"][run.subset])
        if n_train is not None and batch > n_train:
            raise ParamsError(
                f"{where}: batch_size = {batch} is larger than the {n_train} training images of {run.dataset} in "
                f"subset {run.subset!r}: no full batch, no training step. Allowed: batch_size <= {n_train} "
                f"(set it in recipe {run.recipe_name!r} or profiles.{name}.overrides.train).")
        if family(run.model) != "vit":
            # ConViT / Swin / KAN: create_model checks the rest (windows, heads, universal Swin) on the meta device
            _check_family_run(where, run)
            continue
        arch = {**model_config(run.model), **run.model_kwargs}
        if arch["embed_dim"] % arch["num_heads"]:
            field = _model_overrides(name, prof, groups[run.group])[0]
            raise ParamsError(f"{field}: embed_dim = {arch['embed_dim']} is not divisible by num_heads = "
                              f"{arch['num_heads']} (model {run.model}, run {run.run_id}); allowed: a multiple of the "
                              f"head count")
        try:
            check_heads(parse_attention(run.attention), arch["num_heads"])
        except ValueError as exc:
            raise ParamsError(f"{where}: attentions.{run.attention_label}: {exc}") from None


def _check_family_run(where: str, run) -> None:
    """A ConViT / Swin / KAN run's family rules (karat.config.models.check_family, the checks create_model makes):
    a universal Swin, KArAt on a model with no MHSA block or on a KAN, an image size Swin cannot window are
    refused before any job."""
    from .models import check_family     # torch-free: the orchestrators validate without importing torch
    try:
        check_family(run.model, run.attention, dict(run.model_kwargs or {}))
    except ValueError as exc:
        raise ParamsError(f"{where}: {exc}") from None


def _check_analysis_options(profile: str, analysis: str, options: dict) -> None:
    """Each analysis checks its own options (unknown keys, wrong values) now, not when its job runs."""
    import importlib
    try:
        module = importlib.import_module(f"karat.analysis.{analysis}")  # torch loads inside run() only
        module.check_options(dict(options))
    except ValueError as exc:
        raise ParamsError(f"profiles.{profile}.{exc}" if str(exc).startswith("analyses.")
                          else f"profiles.{profile}.analyses.{analysis}: {exc}") from None


# Analyses that run a run's model on images: a copy-mode attention-transfer student has no attention of its
# own (its maps come from its teacher), so they cannot analyse it alone.
_MODEL_ANALYSES = ("landscape", "attention_maps", "spectra", "functions")
# Analyses that apply to every model family (they read log.csv only).
ANY_FAMILY_ANALYSES = ("curves",)


def _select_runs(profile: str, analysis: str, selector: Any, runs: dict) -> list[str]:
    """``all`` / ``kan`` / an attention label select the runs trained from scratch (the paper analyses those;
    fine-tuned and attention-transfer runs are analysed when named by id)."""
    scratch = {rid: spec for rid, spec in runs.items() if not spec.derived_from}
    if analysis not in ANY_FAMILY_ANALYSES:
        # The per-run analyses read each block's attention through karat.attention's layers (plain ViT blocks):
        # ConViT (GPSA blocks), Swin (windows) and plain KAN runs are left out of all / kan / label selections
        # and refused by id, with that reason. Their training curves (curves) are analysed like any run's.
        from .models import family
        for item in (selector if isinstance(selector, list) else []):
            if item in runs and family(runs[item].model) != "vit":
                raise ParamsError(f"profiles.{profile}.analyses.{analysis}.runs: {item!r} is a {runs[item].model} run; "
                                  f"allowed here: ViT runs (this analysis reads plain ViT attention blocks; "
                                  f"ConViT / Swin / KAN runs have only the curves analysis)")
        scratch = {rid: spec for rid, spec in scratch.items() if family(spec.model) == "vit"}
    if selector == "all":
        return list(scratch)
    if selector == "kan":
        return [rid for rid, spec in scratch.items() if spec.is_kan]
    chosen: list[str] = []
    for item in selector:
        if item in runs:
            matches = [item]
            src = runs[item].attention_from
            if src and src["mode"] == "copy" and analysis in _MODEL_ANALYSES:
                raise ParamsError(f"profiles.{profile}.analyses.{analysis}.runs: {item!r} is a copy-mode "
                                  f"attention-transfer student, whose attention comes from its teacher at run time; "
                                  f"allowed here: runs that compute their own attention")
        else:  # an attention label selects every from-scratch run with that attention
            matches = [rid for rid, spec in scratch.items() if spec.attention_label == item]
        if not matches:
            raise ParamsError(f"profiles.{profile}.analyses.{analysis}.runs: {item!r} is neither a run id nor "
                              f"an attention label of this profile; run ids: {sorted(runs)}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def resolve_run(path: str | os.PathLike, profile: str | None, run_id: str) -> RunSpec:
    prof = load_profile(path, profile)
    if run_id not in prof.runs:
        raise ParamsError(f"--run: {run_id!r} is not a run of profile {prof.name!r}; runs: {sorted(prof.runs)}")
    return prof.runs[run_id]


__all__ = [
    "ANALYSES", "ANALYSES_PER_RUN", "DatasetNeed", "ParamsError", "Profile", "RunSpec", "attention_spec",
    "deep_merge", "expand_profile", "load_params", "load_profile", "profile_name", "recipe_chain",
    "resolve_recipe", "resolve_run", "validate_params",
]
