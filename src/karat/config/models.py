"""The registered model names and their shapes, torch-free: karat.models builds them, karat.config checks a
profile's models and ``model_overrides`` against them before anything runs.

Families (``family(name)``):

* ``vit``    karat's ViTs: ``vit_{tiny,small,base}_{patch16_224,patch4_32}`` (KArAt in every block).
* ``convit`` timm's ConViT: ``convit_tiny`` (224/16, N = 197 in the 2 MHSA blocks) and the CIFAR-native
  ``convit_tiny_patch4_32`` (N = 65). KArAt only in the MHSA blocks (the last 2); GPSA keeps its softmaxes.
* ``swin``   timm's Swin: ``swin_tiny_patch4_window7_224`` (depths 2-2-6-2, heads 3-6-12-24, N = 49 per
  window) and the CI-size ``swin_tiny_w7_56`` (depths 2-2, heads 3-6: one shifted block at
  14 x 14 tokens, N = 49). Blockwise only.
* ``kan``    plain multi-layer B-spline KANs (Table 14), no attention. The name carries the set-up:
  ``kan_k<k>_g<G>_r<I>_h<w1>x<w2>...`` = spline order k, grid G, grid range [-I, I], hidden widths;
  input 28 x 28 (KANbeFair), channels from the data set (``in_chans``, 3 for CIFAR, 1 for MNIST).
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

ARCHS = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
}
RESOLUTIONS = {
    "patch16_224": dict(patch_size=16, img_size=224),
    "patch4_32": dict(patch_size=4, img_size=32),
}
VIT_NAMES = tuple(f"{a}_{r}" for r in RESOLUTIONS for a in ARCHS)

# ConViT: timm's embed_dim is per head (48 x 4 heads = 192); the last ``depth - local_up_to_layer`` blocks are
# MHSA. The paper's ConViT-Tiny has 10 GPSA + 2 MHSA blocks.
CONVIT = {
    "convit_tiny": dict(embed_dim=48, num_heads=4, depth=12, local_up_to_layer=10, locality_strength=1.0,
                        patch_size=16, img_size=224),
    "convit_tiny_patch4_32": dict(embed_dim=48, num_heads=4, depth=12, local_up_to_layer=10,
                                  locality_strength=1.0, patch_size=4, img_size=32),
}
SWIN = {
    "swin_tiny_patch4_window7_224": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                                         window_size=7, patch_size=4, img_size=224),
    "swin_tiny_w7_56": dict(embed_dim=96, depths=(2, 2), num_heads=(3, 6), window_size=7,
                                        patch_size=4, img_size=56),
}
KAN_PATTERN = re.compile(r"^kan_k(\d+)_g(\d+)_r(\d+)_h(\d+(?:x\d+)*)$")
#: the KAN names the registry (and timm) know: Table 14's default cell and the widest one; any name that
#: matches KAN_PATTERN is built by create_model.
KAN_EXAMPLES = ("kan_k5_g10_r4_h10x10", "kan_k5_g10_r4_h40x40")
KAN_IMG_SIZE = 28
MODEL_NAMES = VIT_NAMES + tuple(CONVIT) + tuple(SWIN) + KAN_EXAMPLES
ALLOWED = (", ".join(VIT_NAMES + tuple(CONVIT) + tuple(SWIN))
           + ", kan_k<k>_g<G>_r<I>_h<w1>x<w2>... (e.g. kan_k5_g10_r4_h10x10)")


def family(name: str) -> str:
    """"vit", "convit", "swin" or "kan"; a ValueError naming the allowed names otherwise."""
    if name in VIT_NAMES:
        return "vit"
    if name in CONVIT:
        return "convit"
    if name in SWIN:
        return "swin"
    if isinstance(name, str) and KAN_PATTERN.match(name):
        return "kan"
    raise ValueError(f"model name={name!r} is not allowed; allowed: {ALLOWED}")


def is_model_name(name: Any) -> bool:
    try:
        family(name)
    except ValueError:
        return False
    return True


def kan_config(name: str) -> dict[str, Any]:
    """{spline_order, grid_size, grid_range, hidden} of a KAN name."""
    m = KAN_PATTERN.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"model name={name!r} is not a KAN name; allowed: kan_k<k>_g<G>_r<I>_h<w1>x<w2>...")
    k, g, r = (int(m.group(i)) for i in (1, 2, 3))
    hidden = tuple(int(w) for w in m.group(4).split("x"))
    for field, v in (("k", k), ("g", g), ("r", r)) + tuple(("h", w) for w in hidden):
        if v < 1:
            raise ValueError(f"model name={name!r}: {field}={v} is not allowed; allowed: an integer >= 1")
    return dict(spline_order=k, grid_size=g, grid_range=(-float(r), float(r)), hidden=hidden,
                img_size=KAN_IMG_SIZE)


def model_config(name: str) -> dict[str, Any]:
    """The constructor keywords of a registered name (ViT: VisionTransformer's; ConViT / Swin: timm's
    ConVit / SwinTransformer's; KAN: karat.models.kan.BSplineKAN's)."""
    fam = family(name)
    if fam == "vit":
        for arch, a in ARCHS.items():
            for res, r in RESOLUTIONS.items():
                if name == f"{arch}_{res}":
                    return {**a, **r}
    if fam == "convit":
        return dict(CONVIT[name])
    if fam == "swin":
        return dict(SWIN[name])
    return kan_config(name)


def geometry(name: str, overrides: dict | None = None) -> dict[str, Any]:
    """What config checks need, for every family: {"family", "embed_dim", "heads" (per attention block, the
    smallest), "img_size", "patch_size"}; ``overrides`` = a profile's model_overrides."""
    fam = family(name)
    arch = {**model_config(name), **(overrides or {})}
    if fam == "kan":
        return {"family": fam, "embed_dim": None, "heads": None, "img_size": arch["img_size"], "patch_size": None}
    if fam == "convit":
        return {"family": fam, "embed_dim": arch["embed_dim"] * arch["num_heads"], "heads": arch["num_heads"],
                "img_size": arch["img_size"], "patch_size": arch["patch_size"]}
    if fam == "swin":
        heads = arch["num_heads"]
        heads = min(heads) if isinstance(heads, (tuple, list)) else heads
        return {"family": fam, "embed_dim": arch["embed_dim"], "heads": heads, "img_size": arch["img_size"],
                "patch_size": arch["patch_size"]}
    return {"family": fam, "embed_dim": arch["embed_dim"], "heads": arch["num_heads"], "img_size": arch["img_size"],
            "patch_size": arch["patch_size"]}


def check_windowable(name: str, img_size: Any, patch_size: int, window_size: int, stages: int) -> None:
    """Swin: every stage's token grid must be a whole number of windows (no padding, no shrunk windows: N = w^2)."""
    unit = patch_size * window_size * 2 ** (stages - 1)
    sizes = img_size if isinstance(img_size, (tuple, list)) else (img_size, img_size)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < unit or s % unit:
            raise ValueError(f"{name}: img_size={img_size!r} is not allowed; allowed: a multiple of patch_size x "
                             f"window_size x 2^(stages - 1) = {patch_size} x {window_size} x {2 ** (stages - 1)} = "
                             f"{unit} (every stage must split into whole {window_size} x {window_size} windows)")


def check_family(name: str, attention: Any, kwargs: dict | None = None) -> None:
    """What create_model refuses for a ConViT / Swin / KAN, without torch (params validation runs it before any
    job): a universal Swin, an image size Swin cannot window, a bad swin_mask, KArAt on a ConViT with no MHSA
    block, KArAt on a KAN, softmax_heads that leave no KArAt head."""
    from karat.attention.config import check_heads, parse_attention   # torch-free
    fam = family(name)
    if fam == "kan":
        if attention not in (None, "none") and parse_attention(attention).is_karat:
            raise ValueError(f"{name}: attention={attention!r} is not allowed; allowed: 'softmax' or 'none' (a plain "
                             f"KAN has no attention; the name sets its units)")
        return
    cfg = parse_attention(attention)
    kw = {**model_config(name), **(kwargs or {})}
    if fam == "swin":
        mask = kw.get("swin_mask", "both")
        if mask not in ("both", "additive"):
            raise ValueError(f"{name}: swin_mask={mask!r} is not allowed; allowed: both, additive")
        if cfg.is_karat and cfg.mode == "universal":
            raise ValueError(f"{name}: attention mode='universal' is not allowed for Swin; allowed: mode='blockwise'. "
                             f"A universal operator is one set of per-head operators for every block, but Swin's "
                             f"head count changes from stage to stage (e.g. 3-6-12-24)")
        check_windowable(name, kw["img_size"], kw["patch_size"], kw["window_size"], len(kw["depths"]))
        heads = kw["num_heads"]
        for h in (heads if isinstance(heads, (tuple, list)) else [heads]):
            check_heads(cfg, h)
    elif fam == "convit":
        depth, local = kw["depth"], kw["local_up_to_layer"]
        if "depth" in (kwargs or {}) and "local_up_to_layer" not in kwargs:
            local = max(0, depth - 2)          # as create_model: always the paper's 2 MHSA blocks
        if cfg.is_karat and local >= depth:
            raise ValueError(f"{name}: depth={depth}, local_up_to_layer={local} leaves no MHSA block for KArAt; "
                             f"allowed: local_up_to_layer < depth")
        check_heads(cfg, kw["num_heads"])


# --------------------------------------------------------------------------------------------------
# model_overrides: the keywords each family's creator accepts, read from the code that takes them

#: family -> (karat's creator, the constructor it passes the keywords to), each as (package, file, name).
#: create_model passes a run's ``model_overrides`` to the creator, which passes what it does not take itself
#: to the constructor; both lists are read from the source, so a new timm or karat keyword is allowed the day
#: it exists and a removed one is refused.
CONSTRUCTORS = {
    "vit": (("karat", "models/factory.py", "create_model"),
            ("timm", "models/vision_transformer.py", "VisionTransformer")),
    "convit": (("karat", "models/convit.py", "create_convit"), ("timm", "models/convit.py", "ConVit")),
    "swin": (("karat", "models/swin.py", "create_swin"), ("timm", "models/swin_transformer.py", "SwinTransformer")),
    "kan": (("karat", "models/kan.py", "create_kan"), ("karat", "models/kan.py", "BSplineKAN")),
}
#: create_model's own arguments (name, num_classes, attention), which every creator takes first
CREATOR_POSITIONALS = 3
#: keywords karat sets and a profile cannot: the class count comes from the data set, the attention layer from
#: ``attentions`` (create_model refuses both in its keywords), the device and dtype from the trainer
_KARAT_SET_WHY = {"num_classes": "from the data set's num_classes", "attn_layer": "from the group's attentions",
                  "device": "the trainer places the model", "dtype": "the trainer sets the precision"}
KARAT_SET = frozenset(_KARAT_SET_WHY)
_TOP_LEVEL = re.compile(r"^(?:class |def |async def |@|[A-Za-z_])", re.M)


def _source_file(package: str, relpath: str) -> Path:
    if package == "karat":
        return Path(__file__).resolve().parents[1] / relpath
    spec = importlib.util.find_spec(package)        # finds the package without importing it (nor torch)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed; run `bash scripts/install.sh`")
    return Path(list(spec.submodule_search_locations)[0]) / relpath


@functools.lru_cache(maxsize=None)
def signature_keywords(package: str, relpath: str, name: str) -> tuple[str, ...]:
    """The named parameters of function ``name`` (of class ``name``'s ``__init__``, without self) in
    ``package/relpath``, read with ``ast`` from the source: importing timm would import torch, which params
    validation must not (the orchestrators answer "what is the DAG?" without it). Only the definition is
    parsed (timm's vision_transformer.py is long); the whole file when that slice does not parse alone."""
    path = _source_file(package, relpath)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it to list the keywords of {name} ({exc.strerror})") from None
    m = re.search(rf"^(?:class|def) {re.escape(name)}\b", text, re.M)
    if m is None:
        raise ValueError(f"{path} defines no {name}: karat.config.models.CONSTRUCTORS names a constructor that "
                         f"moved (another timm version?)")
    end = _TOP_LEVEL.search(text, m.end())
    try:
        tree = ast.parse(text[m.start(): end.start() if end else len(text)])
    except SyntaxError:
        tree = ast.parse(text)
    node = next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name)
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            raise ValueError(f"{path}: class {name} defines no __init__ to read its keywords from")
        node = init
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return tuple(n for n in names if n not in ("self", "cls"))


@functools.lru_cache(maxsize=None)
def allowed_overrides(fam: str) -> tuple[str, ...]:
    """The ``model_overrides`` keys a model of family ``fam`` takes, sorted: the creator's own keywords (after
    create_model's name, num_classes, attention; e.g. Swin's swin_mask) and its constructor's, less KARAT_SET."""
    if fam not in CONSTRUCTORS:
        raise ValueError(f"family {fam!r} is not allowed; allowed: {sorted(CONSTRUCTORS)}")
    creator, constructor = CONSTRUCTORS[fam]
    keys = set(signature_keywords(*creator)[CREATOR_POSITIONALS:]) | set(signature_keywords(*constructor))
    return tuple(sorted(keys - KARAT_SET))


def check_overrides(name: str, overrides: dict | None, field: str = "model_overrides") -> None:
    """Refuse a ``model_overrides`` key that model ``name``'s family does not take (a misspelling, another
    family's keyword), naming ``field.key``, its value, the closest allowed key and every allowed key: without
    this the run's job dies with ``unexpected keyword argument`` after the jobs before it spent their time."""
    fam = family(name)
    allowed = allowed_overrides(fam)
    for key, value in (overrides or {}).items():
        if key in allowed:
            continue
        creator, constructor = CONSTRUCTORS[fam]
        hint = ""
        if key in KARAT_SET:
            why = f"karat sets {key} itself ({_KARAT_SET_WHY[key]})"
        else:
            why = f"{name} takes no such keyword ({creator[2]} and {constructor[0]}'s {constructor[2]} take none)"
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{field}.{key} = {value!r} is not allowed: {why}.{hint} Allowed for {name}: "
                         f"{', '.join(allowed)}")


__all__ = ["allowed_overrides", "check_overrides", "signature_keywords", "CONSTRUCTORS", "KARAT_SET",
           "check_windowable", "check_family", "ARCHS", "RESOLUTIONS", "MODEL_NAMES", "VIT_NAMES", "CONVIT", "SWIN",
           "KAN_PATTERN", "model_config",
           "family", "is_model_name", "kan_config", "geometry"]
