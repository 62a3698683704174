"""Every choice the training engine makes where the paper is silent or ambiguous, in one list.

The report renders this list (``assumptions_for(spec.recipe)`` for each distinct recipe of a profile), so
a reader sees what was assumed next to the numbers. Each entry is a dict:

``key``     the recipe key (``train.x`` / ``data.x``) or a name for a behaviour of the engine
``value``   our value (from the recipe when the recipe sets it)
``paper``   what the paper says, with the PAPER.md section / §7 item
``why``     why we chose this value

:data:`ASSUMPTIONS` shows the defaults (the ``paper`` recipe values); :func:`assumptions_for` fills in the
values of one resolved recipe.
"""
from __future__ import annotations

import copy
from typing import Any

from .recipe import DEFAULTS as TRAIN_DEFAULTS
from .recipe import validate_train_recipe

# (key, recipe section or None for engine behaviour, paper, why). ``value`` comes from the recipe for keys
# with a section; the engine's fixed behaviours carry their value here.
_ENTRIES: list[dict] = [
    {"key": "train.lr", "section": "train",
     "paper": "5e-4 x batch / 512 = 3.125e-5 (CIFAR, batch 32), 1.25e-4 (ImageNet, batch 128); per-GPU or "
              "global batch not stated (PAPER §3.1, §7 item 8)",
     "why": "the learning rate is used exactly as stated and is not rescaled by the number of GPUs"},
    {"key": "train.batch_size", "section": "train",
     "paper": "32 (CIFAR) / 128 (ImageNet) on 2 GPUs; per GPU or global NOT FOUND (§3.1, §7 item 8)",
     "why": "the global batch: a DDP run splits it over the ranks, so any number of GPUs trains the same "
            "recipe with the same learning rate"},
    {"key": "train.optimizer", "section": "train",
     "paper": "'ADAM' in §C.1, 'AdamW' in Table 5 (§7 item 9)",
     "why": "AdamW: Table 5 is the hyper-parameter table, and weight decay 0.05 is DeiT's AdamW setting"},
    {"key": "train.betas", "section": "train",
     "paper": "momentum 0.9 (beta1); beta2 NOT FOUND (§3.1)",
     "why": "beta2 = 0.999, the PyTorch/timm default used by DeiT"},
    {"key": "train.karat_weight_decay", "section": "train",
     "paper": "not discussed (weight decay 0.05 for the model, §3.1)",
     "why": "the KArAt coefficients and W are ordinary learnable weights of the attention; decaying them like "
            "the other weights is what an optimizer built from model.parameters() would do"},
    {"key": "weight_decay_exclusions", "section": None,
     "value": "biases, norm weights, pos_embed, cls_token (every 1-D tensor and model.no_weight_decay())",
     "paper": "not stated; 'DeiT training strategy' (§3.1)",
     "why": "DeiT/timm exclude these from weight decay (timm param_groups_weight_decay)"},
    {"key": "train.sched_on", "section": "train",
     "paper": "cosine, 5 warm-up epochs from 1e-6, min 1e-5 (§3.1); update granularity not stated",
     "why": "'epoch' follows DeiT (the schedule steps once per epoch); 'step' gives a smooth per-step "
            "schedule for the short CPU recipes, where a whole epoch at the warm-up LR would be wasted"},
    {"key": "cosine_horizon", "section": None,
     "value": "timm CosineLRScheduler: t_initial = epochs, linear warm-up overlaid on the first "
              "warmup_epochs (warmup_prefix=False), no cooldown epochs",
     "paper": "'decay epochs 1, decay rate 0.988' also listed (timm step-decay fields; no effect under cosine) "
              "(§3.1)",
     "why": "DeiT's create_scheduler with its default warmup_prefix=False; the step-decay fields are ignored"},
    {"key": "train.drop_path", "section": "train",
     "paper": "drop-path NOT FOUND (§3.1, §7 item 10)",
     "why": "0.1, DeiT's default for ViT-Tiny/Small"},
    {"key": "dropout", "section": None, "value": "0 (attention and projection dropout)",
     "paper": "dropout NOT FOUND (§3.1)", "why": "DeiT and timm's ViT defaults"},
    {"key": "data.random_erasing", "section": "data",
     "paper": "random erasing NOT FOUND (§3.1, §7 item 10)", "why": "0.25, DeiT's default"},
    {"key": "data.mixup_alpha", "section": "data",
     "paper": "mixup and cutmix on, 'probability 0.5, 0.5', alphas NOT FOUND (§3.1, §7 item 10)",
     "why": "0.8, DeiT's default"},
    {"key": "data.cutmix_alpha", "section": "data",
     "paper": "alphas NOT FOUND (§3.1, §7 item 10)", "why": "1.0, DeiT's default"},
    {"key": "data.mixup_prob", "section": "data",
     "paper": "'probability 0.5, 0.5' (§3.1, §7 item 10)",
     "why": "read as timm mixup_prob = 0.5 and mixup_switch_prob = 0.5"},
    {"key": "repeated_augmentation", "section": None, "value": "off",
     "paper": "repeated augmentation NOT FOUND (§3.1)",
     "why": "DeiT turns it on for ImageNet, but it mostly matters for many-GPU runs and is not listed in "
            "Table 5; off keeps one image per sample per epoch"},
    {"key": "train.label_smoothing", "section": "train",
     "paper": "0.1 (§3.1)",
     "why": "applied to the training loss only (inside the mixup/cutmix targets when those are on); the "
            "logged test loss is plain cross-entropy"},
    {"key": "train.ema_decay", "section": "train",
     "paper": "EMA on, decay 0.99992; whether the reported accuracy is the EMA model NOT FOUND (§3.1)",
     "why": "EMA updated after every optimizer step, no EMA warm-up (timm ModelEma as DeiT uses it); both raw "
            "and EMA weights are evaluated every epoch and both are in eval.json"},
    {"key": "train.report_weights", "section": "train",
     "paper": "last vs best epoch, EMA vs raw NOT FOUND (§7 item 11)",
     "why": "ema_best for the paper recipes (the EMA is what DeiT's recipe is for, and DeiT prints the best "
            "accuracy seen); every combination is kept in eval.json so the choice can be changed"},
    {"key": "best_epoch_selection", "section": None,
     "value": "highest test top-1 after an epoch, raw and EMA tracked separately",
     "paper": "best-vs-last NOT FOUND (§3.1, §7 item 11)",
     "why": "CIFAR has no separate validation split and the paper reports test accuracy, so the test split "
            "selects the best epoch, as DeiT's 'max accuracy' does; this is optimistic by construction"},
    {"key": "train.grad_clip", "section": "train",
     "paper": "gradient clipping 1.0 (§3.1)",
     "why": "clip the global L2 norm of all gradients (timm's default 'norm' mode)"},
    {"key": "train.amp", "section": "train",
     "paper": "precision NOT FOUND (§3.1, §3.8)",
     "why": "bf16 autocast on CUDA (same range as float32, no loss scaling); float32 on the CPU"},
    {"key": "data.interpolation", "section": "data",
     "paper": "CIFAR images are upsampled to 224x224 (Table 5, §2); the interpolation NOT FOUND",
     "why": "bicubic, DeiT's and timm's choice for resizing (train crops and the eval resize)"},
    {"key": "drop_last", "section": None, "value": "true (training); evaluation uses every test image",
     "paper": "not stated", "why": "timm/DeiT drop the last incomplete training batch"},
    {"key": "seeds", "section": None, "value": "as listed per profile in params.yaml",
     "paper": "seeds / number of runs NOT FOUND; single numbers, no std (§3.1, §7 item 11)",
     "why": "several seeds where the budget allows, reported as mean ± std"},
]


# Choices of the model, the attention operators and the analyses (the same for every recipe): rendered once.
# The init numbers come from `python benchmarks/init_scale.py` (2026-12-01, 2-core x86 CPU; see
# benchmarks/RESULTS.md); the test tests/report/test_assumptions.py re-measures them on a small model.
MODEL_ASSUMPTIONS: list[dict] = [
    {"key": "head size of parameter counts",
     "value": "each run's own head (10 / 100 / 1000 classes); the compute analysis uses 10 classes and, in "
              "the paper profile, 1000 for ViT-Small (analyses.compute.head_classes)",
     "paper": "the Params column mixes 10-class (Tiny, Base) and 1000-class (Small) heads (§1.7, §7 item 3)",
     "why": "Table 13 is compared cell by cell with the head the paper's number implies"},
    {"key": "parameter bookkeeping",
     "value": "(2G + 3)·r·N per operator: 2G coefficients and 1 W entry per unit, plus efficient-KAN's per-edge "
              "base_weight (multiplies b(x) = 0; a forward hook adds 0 * its sum to the attention output so it "
              "gets an exact zero gradient, as timm's checks and DDP expect, and AdamW's decoupled decay shrinks "
              "it without effect) and scaler w_s (init 1); count_parameters reports the total and the used count",
     "paper": "the counts need 2 per-unit parameters beyond Eq. (2) + W; Table 18's r = 2 / 4 counts fit no "
              "single formula (§1.7, §7 item 4)",
     "why": "reproduces every r = 12 count of Tables 1 and 13 exactly (tests/models/test_params_flops.py)"},
    {"key": "attention.init (basis coefficients)",
     "value": "scaled: N(0, 1 / (fan_in x basis functions)); labels with `init: paper` (G3B-paperinit, "
              "G1B-paperinit in the cifar32 profile) use N(0, 1)",
     "paper": "a, b ~ N(0, 1) (Table 6); FourierKAN-style code divides by sqrt(N G) (§7 item 5)",
     "why": "measured at init (benchmarks/init_scale.py: ViT-Tiny 224/16 G3B, 8 random images): the attention "
            "branch's output std is 174x softmax's under N(0, 1) (median over the 12 blocks, 65-301x) and 6x "
            "under the scaled init; N(0, 1) makes the KArAt branch swamp the residual stream at step 0"},
    {"key": "W init",
     "value": "timm's Linear init, trunc_normal(std 0.02), no bias (both coefficient inits)",
     "paper": "NOT FOUND (§1.4, §7 item 5)",
     "why": "what a timm-based implementation inherits for an N x r linear map; no bias fits the counts (§1.7)"},
    {"key": "l1 projection placement",
     "value": "Algorithm 1 on the final N-dim row (`l1_projection: true`); 'hidden' (between Φ̂ and W, as "
              "Algorithm 2 draws it) on request",
     "paper": "§3 projects the final row, Algorithm 2 the r-dim vector (§1.5, §7 item 7)",
     "why": "only the final-row reading makes attention rows distributions, the stated goal of the projection"},
    {"key": "base activation b(x)",
     "value": "phi = w_b b(x) + w_s f(x) with a learnable per-edge w_b (efficient-KAN base_weight, kaiming-uniform "
              "init); b in {zero, identity, silu, gelu} (v3 Table 7)",
     "paper": "Zero / SiLU / Identity on the project page, Identity / SiLU / GELU in v3 Table 7; whether b carries "
              "a learnable weight NOT FOUND (§1.4, §7 item 27)",
     "why": "the per-edge base weight is the bookkeeping parameter the counts need, so it is the weight of b(x)"},
    {"key": "wavelet parameters",
     "value": "one wavelet per unit with its own w, translation tau (init 0) and scale s (init 1); w drawn like "
              "the Fourier coefficients (attention.init)",
     "paper": "w ~ N(0, 1), tau = 0, s = 1; per unit or several per unit NOT FOUND (§1.9)",
     "why": "Wav-KAN, which the paper cites, has one wavelet per edge with per-edge w, s, tau"},
    {"key": "Meyer wavelet",
     "value": "psi = sin(pi |x~|) m(|x~|): the auxiliary m is applied to |x~|",
     "paper": "w sin(pi |x~|) (m o nu)(x~) with m on t (§1.9)",
     "why": "Wav-KAN's Meyer; m of the signed x~ would be 1 on the whole negative half-line (no decay there)"},
    {"key": "Shannon wavelet",
     "value": "sinc(x~ / pi) times a symmetric Hamming window of length N over the input index q "
              "(torch.hamming_window(N, periodic=False))",
     "paper": "symmetric Hamming window; its length / support NOT FOUND (§1.9)",
     "why": "Wav-KAN applies the window along the input axis in the same way"},
    {"key": "loss landscape",
     "value": "trajectory-PCA plane of the weight snapshots centred on the final weights; every trainable "
              "parameter (1-D ones, position embedding, KArAt coefficients and W) is a coordinate; no filter "
              "normalisation on the PCA plane; grid, extent and evaluation batches from analyses.landscape",
     "paper": "Li et al.'s PCA-trajectory method on the CIFAR-10 validation set; grid, resolution, checkpoints and "
              "normalisation NOT FOUND (§5 Fig. 3, §7 item 18)",
     "why": "the plane should show where the optimiser actually moved (karat.analysis.landscape)"},
    {"key": "attention maps",
     "value": "the activated attention (what multiplies V), CLS row of the last block, negatives clipped to 0, "
              "nearest upsampling; dominant head = largest clipped CLS mass, its region = the fewest patches "
              "holding 60% of that mass (DINO)",
     "paper": "which tensor, the thresholding of 'image regions' and the upsampling NOT FOUND (§7 item 19)",
     "why": "the tensor the model actually uses; DINO's display rule (karat.analysis.attention_maps)"},
    {"key": "weight-distribution figure",
     "value": "every >= 2-D weight outside the KArAt operators (the same set for softmax and KArAt models); the "
              "KArAt coefficients and W get their own per-head, per-block histograms",
     "paper": "which weights Fig. 12 histograms NOT FOUND (§7 item 20)",
     "why": "the same tensors in both models make the two histograms comparable (karat.analysis.weights)"},
    # Runs that start from other runs (karat.config.transfer, karat.training.transfer / attention_transfer)
    {"key": "fine-tuning start (Table 2)",
     "value": "the upstream ImageNet-1K run's reported weights (ema_best in the paper recipe), every tensor loaded "
              "strictly except the classifier head, which keeps its fresh timm initialisation for the new class "
              "count; the EMA is created after loading (it averages the fine-tuned weights from the pretrained ones)",
     "paper": "fine-tuning hyper-parameters, epochs, resolution and head re-initialisation NOT FOUND (§3.4)",
     "why": "the usual protocol (DeiT / timm fine-tuning); a checkpoint of another token count is refused, as KArAt "
            "operators are sized by N and cannot be interpolated like position embeddings"},
    {"key": "fine-tuning recipe (recipes.finetune)",
     "value": "AdamW lr 1e-4 at batch 64, 2 warm-up epochs, cosine to 1e-6, wd 0.05, drop-path 0.1, RandAugment "
              "m9, no mixup / cutmix / erasing, 224 px; SVHN 10, STL-10 50, Flowers-102 100 epochs; EMA decay 0.999; "
              "3 fine-tuning seeds per cell from the seed-0 ImageNet run. Inherited from the ImageNet recipe "
              "unchanged: random-resized crop scale (0.08, 1), horizontal flip 0.5, colour jitter 0.4, label "
              "smoothing 0.1, evaluation centre crop 0.9",
     "paper": "NOT FOUND (§3.4)",
     "why": "a 10x lower peak lr than from scratch, a few thousand steps per dataset; EMA horizon 1/(1 - 0.999) = "
            "1,000 steps, at most a third of the shortest fine-tune (the pretraining's 0.99992 spans 12,500 steps, "
            "longer than a whole Flowers-102 fine-tune)"},
    {"key": "fine-tuning augmentation inherited from the ImageNet recipe",
     "value": "random-resized crop scale (0.08, 1) and ratio (0.67, 1.5), colour jitter 0.4, label smoothing 0.1, "
              "evaluation centre crop 0.9 (resize to 224 / 0.9, crop 224) on SVHN, Flowers-102 and STL-10",
     "paper": "fine-tuning augmentation NOT FOUND (§3.4)",
     "why": "DeiT-style fine-tuning keeps the pretraining's augmentation and only turns off mixup / cutmix / "
            "erasing; a scale down to 0.08 is aggressive for 2,040 Flowers images and small SVHN digits, but "
            "changing it would be a second unstated choice with no number to check it against"},
    {"key": "horizontal flip on SVHN (profiles.paper.overrides.by_dataset.svhn)",
     "value": "0 on SVHN (digits), 0.5 on Flowers-102 and STL-10",
     "paper": "NOT FOUND (§3.4)",
     "why": "a mirrored house number is a different image (mirrored 2, 5, 7 are not digits and the digit order "
            "reverses), so flipping adds label noise; the usual SVHN recipes do not flip. Flowers and objects are "
            "mirror-symmetric classes, where the flip is harmless"},
    {"key": "Flowers-102 split",
     "value": "train + val = 2,040 images for training, the official test split (6,149) for evaluation",
     "paper": "split NOT FOUND (§3.4)",
     "why": "the common transfer-learning protocol (as in the ViT / DeiT transfer tables); the official train "
            "split alone has 10 images per class"},
    {"key": "reported weights of fine-tunes and attention-transfer teachers",
     "value": "the best-epoch EMA weights (report_weights: ema_best), the epoch chosen on the test split; a "
              "fine-tune starts from and a Table 4 teacher is the upstream run's reported (ema_best) weights",
     "paper": "NOT FOUND (§7 item 11)",
     "why": "the same rule as the from-scratch runs (DeiT's 'max accuracy'); it is optimistic by construction, "
            "for fine-tunes (the test split picks their epoch) and for students (their teacher's epoch was "
            "picked on the test split too); every weight variant is kept in eval.json"},
    {"key": "attention transfer (Table 4)",
     "value": "copy mode: each block's attention matrix is the frozen teacher's activated matrix (softmax(A) or "
              "sigma-hat(A) = W Phi(A)) on the same augmented batch, every block, teacher's reported weights; the "
              "student's q and k are unused, the value branch and the rest are trained; the teacher also runs at "
              "evaluation. A 12-head student repeats each of a 3-head teacher's maps for 4 consecutive heads. "
              "distill mode (an option): the student keeps its attention and adds 3 x CE (softmax teachers) or "
              "MSE (KArAt sigma-hat(A), rows not distributions) toward the teacher's maps",
     "paper": "'query and key frozen, the value branch and the rest trained'; which tensor, the head mapping and "
              "the recipe NOT FOUND (§3.6); Li et al. 2024 copy / distill (CE, weight 3)",
     "why": "copy mode is what 'query and key frozen' with 'precomputed attention matrices' describes; all blocks "
            "(Li et al.'s code leaves the last 3 out only because its --end_layer flag is never passed on); the "
            "Table 5 recipe as for the from-scratch runs"},
    {"key": "ConViT-Tiny with KArAt (Table 3)",
     "value": "timm convit_tiny; KArAt in the 2 MHSA blocks only (N = 197), GPSA keeps its content and position "
              "softmaxes; blockwise 8 operators, universal 4 shared by both blocks (karat.models.convit)",
     "paper": "'only the MHSA layers' get KArAt (§2)",
     "why": "GPSA mixes two softmaxes with a learned gate; replacing them is not what the paper describes"},
    {"key": "Swin-Tiny shifted-window mask with KArAt (Table 3)",
     "value": "swin_mask = both (default): masked inputs contribute nothing to Phi-hat and masked outputs are 0, so "
              "nothing crosses a mask; swin_mask = additive (an option) adds timm's -100 to the scores and applies "
              "the operator, what a plain swap of the softmax does. One operator per (block, head) shared across "
              "the windows; the relative position bias is added before the activation; the reference path of the "
              "operator (units in float32 under bf16 autocast)",
     "paper": "Swin-Tiny blockwise only (§2); the mask NOT FOUND",
     "why": "a Fourier unit turns -100 into a phase shift, not a zero, and W spreads weight back onto masked "
            "columns: the additive swap lets wrapped-around tokens leak in (tests/models/test_families.py)"},
    {"key": "plain B-spline KANs (Table 14)",
     "value": "KANbeFair's set-up: images resized to 28 x 28 and flattened (CIFAR 2,352, MNIST 784 inputs), "
              "per-dataset mean/std, Adam lr 1e-3, batch 128, 20 epochs, best test top-1 reported as an integer; "
              "pykan layout per edge (G + k coefficients, scale_base, scale_sp, fixed mask) + a bias per output, "
              "SiLU base branch, knots on [-I, I]; coefficients ~ N(0, 1 / (d_in (G + k)))",
     "paper": "k, G, range and hidden widths per row; recipe and data handling NOT FOUND (§3.7)",
     "why": "the table's numbers match the public KANbeFair benchmark, and its accounting "
            "sum d_in d_out (G + k + 3) + d_out is pykan's"},
]


def model_assumptions() -> list[dict]:
    """The model, operator and analysis assumptions (recipe-independent), as dicts key / value / paper / why."""
    return copy.deepcopy(MODEL_ASSUMPTIONS)


# The values the paper recipe (params.yaml `paper`) uses where the paper is silent; a recipe that differs
# (e.g. the short CPU recipes) gets a note that it overrides them.
_PAPER_RECIPE = {**{f"train.{k}": v for k, v in TRAIN_DEFAULTS.items() if v is not None},
                 "data.random_erasing": 0.25, "data.mixup_alpha": 0.8, "data.cutmix_alpha": 1.0,
                 "data.mixup_prob": 0.5}


def _data_defaults() -> dict:
    try:
        from karat.data.recipe import DEFAULTS
        return dict(DEFAULTS)
    except ImportError:  # data part not installed: show the recipe's own values only
        return {}


def assumptions_for(recipe: dict) -> list[dict]:
    """The assumptions with the values of ``recipe`` (``{"train": {...}, "data": {...}}``, resolved)."""
    recipe = recipe or {}
    train = recipe.get("train", {})
    train = validate_train_recipe(train) if train else dict(TRAIN_DEFAULTS)
    data = {**_data_defaults(), **(recipe.get("data") or {})}
    out = []
    for e in _ENTRIES:
        item = {"key": e["key"]}
        if e["section"] is None:
            item["value"] = e["value"]
        else:
            name = e["key"].split(".", 1)[1]
            source = train if e["section"] == "train" else data
            item["value"] = copy.deepcopy(source.get(name))
        item["paper"] = e["paper"]
        item["why"] = e["why"]
        default = _PAPER_RECIPE.get(e["key"])
        if e["section"] is not None and default is not None and item["value"] != default:
            item["why"] = (f"this recipe sets {item['value']!r} instead of the paper recipe's {default!r} (a choice "
                           f"of this profile, e.g. for its compute budget); for the paper recipe: {e['why']}")
        out.append(item)
    img = data.get("img_size")
    if img is not None and img != 224:
        out.append({"key": "data.img_size", "value": img,
                    "paper": "224x224 for all datasets, CIFAR upsampled (§3.1)",
                    "why": "CIFAR-native resolution for the 32/4 models: 65 tokens instead of 197, so the "
                           "CPU and small-GPU profiles can train the same architectures"})
    if train.get("epochs") != 100:
        out.append({"key": "train.epochs", "value": train.get("epochs"), "paper": "100 epochs (§3.1)",
                    "why": "shortened for this profile's compute budget; the accuracies are not comparable "
                           "to the paper's"})
    return out


ASSUMPTIONS: list[dict] = assumptions_for({
    "train": {**{k: v for k, v in TRAIN_DEFAULTS.items() if v is not None},
              "epochs": 100, "batch_size": 32, "lr": 3.125e-5},
    "data": {"img_size": 224, "random_erasing": 0.25, "mixup_alpha": 0.8, "cutmix_alpha": 1.0,
             "mixup_prob": 0.5, "mixup_switch_prob": 0.5},
})

__all__ = ["ASSUMPTIONS", "MODEL_ASSUMPTIONS", "assumptions_for", "attention_branch_scale", "init_scale_ratios",
           "model_assumptions"]


# --------------------------------------------------------------------------------------------------
# the measurement behind the coefficient-init assumption (PAPER §7.5)

def attention_branch_scale(model_name: str = "vit_tiny_patch16_224", attention: Any = "softmax", *,
                           images: int = 8, seed: int = 0, **model_kwargs) -> list[float]:
    """Std of each block's attention-branch output (``block.attn``, after the output projection) at init, for
    ``images`` N(0, 1) images: how large the KArAt branch starts compared with softmax's under an init."""
    import torch

    import karat

    torch.manual_seed(seed)
    model = karat.create_model(model_name, num_classes=10, attention=attention, **model_kwargs).eval()
    stds: list[float] = []
    hooks = [blk.attn.register_forward_hook(lambda m, i, o: stds.append(float(o.float().std())))
             for blk in model.blocks]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, *model.patch_embed.img_size, generator=gen)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return stds


def init_scale_ratios(model_name: str = "vit_tiny_patch16_224", grid_size: int = 3, *, images: int = 8,
                      seed: int = 0, **model_kwargs) -> dict:
    """Per-block attention-branch std for softmax, the "scaled" and the "paper" (N(0, 1)) coefficient init, and
    the median over blocks of paper / softmax and scaled / softmax."""
    import statistics

    out: dict = {"model": model_name, "grid_size": grid_size, "images": images, "seed": seed}
    for name, att in (("softmax", "softmax"),
                      ("scaled", {"basis": "fourier", "grid_size": grid_size, "mode": "blockwise", "init": "scaled"}),
                      ("paper", {"basis": "fourier", "grid_size": grid_size, "mode": "blockwise", "init": "paper"})):
        out[name] = attention_branch_scale(model_name, att, images=images, seed=seed, **model_kwargs)
    for name in ("scaled", "paper"):
        ratios = [k / s for k, s in zip(out[name], out["softmax"])]
        out[f"{name}_over_softmax"] = statistics.median(ratios)
        out[f"{name}_over_softmax_range"] = [min(ratios), max(ratios)]
    return out
