"""Runs that start from other runs: claim 9 (fine-tuning ImageNet models on SVHN / Flowers-102 / STL-10,
Table 2) and claim 15 (KArAt attention maps: larger regions, and attention transfer, Table 4)."""
from __future__ import annotations

from ..results import Results
from .engine import (FAMILIES, MAIN_G, Claim, Part, acc, acc_pool, analysed_dataset, analysis_of, analysis_stat,
                     compare, name, pooled_std, spread, stat_numbers, untested, with_pool)

TRANSFER_DATASETS = ("svhn", "flowers102", "stl10")
TRANSFER_GAP = 3.0   # points: "within ~0.3–2.8 points of vanilla"


def _transfer_pool(results: Results, family: str, dataset: str, any_family: bool) -> tuple:
    stats = {}
    for r in results.evaluated():
        if r.dataset == dataset and r.experiment == "transfer" and (any_family or r.family == family):
            stats[f"{r.family}/{r.spec.attention_label}"] = results.stat(
                model=r.family, attention=r.spec.attention_label, metric="top1", dataset=dataset,
                experiment="transfer")
    return pooled_std(stats)


def claim_9(results: Results) -> Claim:
    parts = []
    for family in FAMILIES:
        g = MAIN_G[family]
        for dataset in TRANSFER_DATASETS:
            s = results.stat(model=family, attention="softmax", metric="top1", dataset=dataset, experiment="transfer")
            for att in (f"G{g}B", f"G{g}U"):
                k = results.stat(model=family, attention=att, metric="top1", dataset=dataset, experiment="transfer")
                text = (f"{name(family, att, dataset)} (fine-tuned): slightly below softmax (0 to {TRANSFER_GAP:g} "
                        "points)")
                if k is None or s is None:
                    parts.append(untested(text, f"{name(family, att)} and {name(family)} trained on imagenet and "
                                                f"fine-tuned on {dataset} (finetune_from; the `paper` profile's "
                                                "table2_* groups)"))
                    continue
                k, s_ = (with_pool(x, lambda wide, f=family, d=dataset: _transfer_pool(results, f, d, wide))
                         for x in (k, s))
                d, sp = k.mean - s_.mean, spread(k, s_)
                if sp is None:
                    verdict = "inconclusive"
                else:
                    verdict = ("supported" if -TRANSFER_GAP - sp <= d <= sp else
                               "contradicted" if d > 2 * sp or d < -TRANSFER_GAP - 2 * sp else "inconclusive")
                parts.append(Part(text, verdict, {**stat_numbers(att, k), **stat_numbers("softmax", s_),
                                                  "difference": d, "spread": sp, "margin": TRANSFER_GAP},
                                  -TRANSFER_GAP <= d <= 0))
    return Claim(9, "KArAt transfers reasonably (SVHN / Flowers / STL-10 within ~0.3–2.8 points of vanilla, always "
                    "slightly below).", parts,
                 reason="the parts need softmax and KArAt ImageNet-1K runs fine-tuned on SVHN, Flowers-102 and STL-10 "
                        "(Table 2)",
                 notes=[f"'Slightly below' is read as 0 to {TRANSFER_GAP:g} points below softmax, the paper's "
                        "0.11–2.81, widened by the seed spread; clearly above softmax or more than "
                        f"{TRANSFER_GAP:g} points below (beyond 2 spreads) contradicts it."])


TRANSFER_TEACHER = "vit_tiny+G3B"
# Table 4: (student family, teacher as the table names it) -> what the paper says of it
STUDENTS = (("vit_tiny", "vit_tiny+G3B"), ("vit_base", "vit_base+G1B"), ("vit_base", "vit_tiny+G3B"))


def student(results: Results, family: str, teacher: str, dataset: str):
    """The softmax student of ``teacher``'s maps (Table 4), spread pooled with its model's from-scratch cells."""
    st = results.stat(model=family, attention="softmax", metric="top1", dataset=dataset,
                      experiment="attention_transfer", extra={"transfer_from": teacher})
    return with_pool(st, lambda wide: acc_pool(results, family, dataset, "top1", wide))


def _teacher_name(teacher: str) -> str:
    fam, att = teacher.split("+")
    return name(fam, att)


def claim_15(results: Results) -> Claim:
    parts = []
    fam, att = "vit_tiny", f"G{MAIN_G['vit_tiny']}B"
    ds = analysed_dataset(results, "attention_maps", fam, ("softmax", att), prefer=("imagenet", "cifar10", "cifar100"))
    region = (lambda s: s["mean_region_fraction"])
    text = f"{name(fam, att)}: the dominant head's region covers more of the image than softmax's (mean region fraction)"
    parts.append(compare(analysis_stat(results, "attention_maps", fam, ds, att, region, "region") if ds else None,
                         analysis_stat(results, "attention_maps", fam, ds, "softmax", region, "region") if ds else None,
                         ">", text + (f", {ds}" if ds else ""), ("karat", "softmax"),
                         needs=analysis_of("attention_maps", (fam, att, "imagenet"), (fam, "softmax", "imagenet"))))
    for dataset in ("cifar10", "cifar100"):
        st = student(results, "vit_tiny", TRANSFER_TEACHER, dataset)
        for a in ("softmax", att):
            need = (f"a ViT-Tiny trained on {dataset} with ViT-Tiny+G3B's attention maps (attention_from; the `paper` "
                    f"profile's table4_tiny_from_tiny_g3b) and {name('vit_tiny', a)} from scratch")
            parts.append(compare(st, acc(results, "vit_tiny", a, dataset), ">",
                                 f"{dataset}: ViT-Tiny with ViT-Tiny+G3B's attention maps > {name('vit_tiny', a)} from "
                                 "scratch (Table 4)", ("student", a), needs=need))
    for fam_s, teacher in STUDENTS[1:]:
        for dataset in ("cifar10", "cifar100"):
            need = (f"a ViT-Base trained on {dataset} with {_teacher_name(teacher)}'s attention maps (the `paper` "
                    f"profile's table4_base_from_* groups) and ViT-Base from scratch")
            parts.append(compare(acc(results, fam_s, "softmax", dataset), student(results, fam_s, teacher, dataset),
                                 "not_below_by", f"{dataset}: ViT-Base with {_teacher_name(teacher)}'s attention maps "
                                 "does not beat ViT-Base from scratch (Base-derived maps do not help; Table 4)",
                                 ("softmax", "student"), margin=0.0, needs=need))
    return Claim(15, "KArAt attention maps cover whole objects (better interpretability); transferring KArAt attention "
                     "maps to a vanilla ViT-Tiny beats both vanilla and KArAt Tiny (77.94 / 48.91), while Base-derived "
                     "maps do not help.", parts,
                 reason="the parts need the attention_maps analysis of ViT-Tiny softmax and G3B, and Table 4's "
                        "attention-transfer students beside the from-scratch runs",
                 notes=["An attention-transfer student is a single run per dataset unless the profile replicates it; "
                        "its spread is then the pooled spread of the replicated from-scratch cells of its model and "
                        "dataset (the rule above).",
                        "'Do not help' is read as the student not above ViT-Base from scratch beyond the seed spread "
                        "(contradicted when it is above by more than twice the spread).",
                        "The region part is judged on the first of ImageNet (the paper's Fig. 4), CIFAR-10, CIFAR-100 "
                        "that the attention_maps analysis covers."])
