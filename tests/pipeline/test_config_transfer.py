"""Runs that start from other runs, as params.yaml says them (karat.config.transfer): ids, resolution, clear errors,
and the upstream / teacher weights as inputs of exactly the derived runs' stages."""
import copy
from pathlib import Path

import pytest

from karat.config import ParamsError, expand_profile, load_params
from karat.pipeline import by_name, stages

REPO = Path(__file__).resolve().parents[2]
G3B = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
SOFTMAX = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
FT = "cifar5_fixture-vit_tiny_patch4_32-G3B-s0-ft-cifar10_fixture"
STUDENT = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0-atcopy-G3B"


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def group(params, name, profile="ci"):
    return next(g for g in params["profiles"][profile]["groups"] if g["name"] == name)


def refused(params, mutate, profile="ci") -> str:
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(ParamsError) as err:
        expand_profile(p, profile)
    return str(err.value)


def test_ci_derived_runs_resolve(params):
    runs = expand_profile(params, "ci").runs
    assert list(runs)[:4] == [SOFTMAX, G3B, FT, STUDENT]   # (then the ConViT, Swin and KAN runs of Tables 3, 14)
    ft, st = runs[FT], runs[STUDENT]
    assert ft.num_classes == 5 and ft.finetune_from["run"] == G3B and ft.finetune_from["reset_head"]
    assert ft.finetune_from["file"] == f"runs/ci/{G3B}/best.safetensors"   # ci reports raw_best
    assert st.attention_from["run"] == G3B and st.attention_from["mode"] == "copy"
    assert st.attention_from["teacher"]["attention_label"] == "G3B" and st.attention == "softmax"
    assert "loss" not in st.attention_from  # copy mode has no attention loss
    assert not runs[G3B].derived_from and "finetune_from" not in runs[G3B].to_dict()


def test_paper_has_table2_and_table4(params):
    runs = expand_profile(params, "paper").runs
    ft = [s for s in runs.values() if s.finetune_from]
    cells = {(s.dataset, s.model, s.attention_label) for s in ft}
    assert len(cells) == 27 and {d for d, _, _ in cells} == {"svhn", "flowers102", "stl10"}
    assert len(ft) == 81 and {s.seed for s in ft} == {0, 1, 2}   # 3 fine-tuning seeds per cell
    for s in ft:
        up = runs[s.finetune_from["run"]]
        assert (up.dataset, up.model, up.attention_label, up.seed) == ("imagenet", s.model, s.attention_label, 0)
        assert s.run_id.endswith("-ft-imagenet" if s.seed == 0 else "-ft-imagenet-s0")
        assert s.finetune_from["weights"] == "best_ema" and s.recipe["train"]["ema_decay"] == 0.999
    at = [s for s in runs.values() if s.attention_from]
    rows = {(s.model, s.attention_from["teacher"]["model"], s.attention_from["teacher"]["attention_label"])
            for s in at}
    assert rows == {("vit_tiny_patch16_224", "vit_tiny_patch16_224", "G3B"),
                    ("vit_base_patch16_224", "vit_base_patch16_224", "G1B"),
                    ("vit_base_patch16_224", "vit_tiny_patch16_224", "G3B")}
    assert {s.dataset for s in at} == {"cifar10", "cifar100"} and len(at) == 6
    assert all(runs[s.attention_from["run"]].dataset == s.dataset for s in at)
    # derived ids never collide with from-scratch ids
    for s in ft + at:
        assert s.run_id.startswith(f"{s.dataset}-{s.model}-{s.attention_label}-s{s.seed}-")
        assert ("-ft-" in s.run_id) != ("-atcopy-" in s.run_id)


def test_missing_upstream_is_named(params):
    msg = refused(params, lambda p: group(p, "finetune").update(finetune_from={"dataset": "cifar100"}))
    assert "groups[1].finetune_from" in msg and "cifar100-vit_tiny_patch4_32-G3B-s0" in msg and "not a run" in msg


def test_unknown_source_dataset_and_both_sources_are_refused(params):
    msg = refused(params, lambda p: group(p, "finetune").update(finetune_from={"dataset": "emnist"}))
    assert "finetune_from.dataset" in msg and "'emnist'" in msg and "allowed" in msg
    msg = refused(params, lambda p: group(p, "finetune").update(finetune_from={"dataset": "cifar10_fixture",
                                                                               "run": G3B}))
    assert "exactly one of `dataset`" in msg


def test_finetune_of_another_attention_is_refused(params):
    msg = refused(params, lambda p: group(p, "finetune").update(finetune_from={"run": SOFTMAX}))
    assert "another attention variant" in msg and SOFTMAX in msg


def test_keeping_the_head_needs_the_same_class_count(params):
    msg = refused(params, lambda p: group(p, "finetune")["finetune_from"].update(reset_head=False))
    assert "reset_head" in msg and "10 classes" in msg and "5" in msg


def test_ema_weights_of_a_run_without_ema_are_refused(params):
    def mutate(p):
        p["recipes"]["ci"]["train"]["ema"] = False
        p["recipes"]["ci"]["train"]["report_weights"] = "raw_best"
        group(p, "finetune")["finetune_from"]["weights"] = "best_ema"
    assert "without EMA" in refused(params, mutate)


def test_teacher_options_are_checked(params):
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(attention="G9Z"))
    assert "attention_from.attention" in msg and "G9Z" in msg
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(blocks=[0, 5]))
    assert "attention_from.blocks" in msg and "[0, 1]" in msg
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(loss="mse"))
    assert "attention_from.loss" in msg and "distill" in msg
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(mode="distill",
                                                                                              loss="ce"))
    assert "'ce' needs the teacher's maps to be distributions" in msg
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(
        model="vit_tiny_patch16_224"))
    assert "not a run" in msg  # no such teacher run in ci
    msg = refused(params, lambda p: group(p, "attention_transfer")["attention_from"].update(attention="G3B",
                                                                                              run=G3B))
    assert "`run` names the teacher run" in msg


def test_teacher_of_another_token_count_is_refused(params):
    def mutate(p):
        p["profiles"]["ci"]["groups"].insert(0, {"name": "big", "datasets": ["cifar10_fixture"],
                                                 "models": ["vit_tiny_patch16_224"], "attentions": ["G3B"],
                                                 "seeds": [0], "recipe": "ci"})
        group(p, "attention_transfer")["attention_from"]["model"] = "vit_tiny_patch16_224"
    msg = refused(params, mutate)
    assert "197 tokens" in msg and "65" in msg


def test_a_copy_mode_student_cannot_be_analysed_alone(params):
    msg = refused(params, lambda p: p["profiles"]["ci"]["analyses"]["attention_maps"].update(runs=[STUDENT]))
    assert "copy-mode" in msg and STUDENT in msg
    p = copy.deepcopy(params)
    p["profiles"]["ci"]["analyses"]["curves"]["runs"] = [STUDENT, FT]   # curves read log.csv only: fine
    assert expand_profile(p, "ci").analyses["curves"] == [STUDENT, FT]


def test_upstream_weights_are_inputs_of_exactly_the_derived_stages(monkeypatch):
    monkeypatch.chdir(REPO)
    st = by_name(stages("ci"))
    g3b_best = f"runs/ci/{G3B}/best.safetensors"
    users = sorted(name for name, s in st.items() if g3b_best in s.deps)
    assert users == sorted([f"evaluate-{G3B}", f"train-{FT}", f"train-{STUDENT}", f"evaluate-{STUDENT}"])
    # a derived run reads its own group's transfer option, and no other group's (issue 21: its own keys only)
    ft_groups = {k for k in st[f"train-{FT}"].params if k.startswith("profiles.ci.groups")}
    assert any(k.endswith(".finetune_from") for k in ft_groups), ft_groups
    assert len({k.split(".")[3] for k in ft_groups}) == 1, ft_groups
    assert not any(k.endswith((".finetune_from", ".attention_from")) for k in st[f"train-{G3B}"].params)
    assert "attentions.G3B" in st[f"train-{STUDENT}"].params
    # the report reads every run, derived ones too
    assert f"runs/ci/{FT}/eval.json" in st["report"].deps and f"runs/ci/{STUDENT}/eval.json" in st["report"].deps


# ---- issue 22: a teacher / student depth mismatch is refused by `validate`, with the trainer's rule

def test_a_student_of_another_depth_is_refused_before_training(params):
    # the student's group has its own depth (3); its teacher, the main group's G3B run, has the profile's 2
    msg = refused(params, lambda p: group(p, "attention_transfer").update(model_overrides={"depth": 3}))
    assert "groups[2].attention_from: the teacher has 2 attention blocks and the student 3" in msg
    assert f"student {STUDENT}" in msg and f"teacher {G3B}" in msg and "allowed: the same depth" in msg
    # a teacher of the student's depth is fine: both groups with depth 3
    p = copy.deepcopy(params)
    group(p, "attention_transfer")["model_overrides"] = {"depth": 3}
    group(p, "main")["model_overrides"] = {"depth": 3}
    group(p, "finetune")["model_overrides"] = {"depth": 3}
    assert expand_profile(p, "ci").runs[STUDENT].attention_from["run"] == G3B


def test_validation_and_training_apply_the_same_depth_rule(params):
    """`validate` and AttentionTransfer (the trainer) both call karat.config.transfer.transfer_blocks: the
    configuration's message and the built models' message state the same rule."""
    msg = refused(params, lambda p: group(p, "attention_transfer").update(model_overrides={"depth": 3}))
    from karat.config.transfer import TransferRuleError, transfer_blocks
    from karat.models import create_model
    from karat.training.attention_transfer import AttentionTransfer
    from karat.training.transfer import TransferError

    with pytest.raises(TransferRuleError) as rule:
        transfer_blocks(2, 3, "all")
    assert str(rule.value) in msg
    spec = expand_profile(params, "ci").runs[STUDENT]
    small = dict(embed_dim=32, num_heads=2)
    teacher = create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", depth=2, **small)
    student = create_model("vit_tiny_patch4_32", num_classes=10, depth=3, **small)
    with pytest.raises(TransferError) as err:
        AttentionTransfer(spec, student, teacher)
    assert str(err.value) == f"{STUDENT}: attention_from: {rule.value}"


def test_attention_transfer_between_other_families_is_refused(params):
    # ConViT / Swin / KAN have no karat ViT attention layers for the trainer to read and replace
    def mutate(p):
        g = group(p, "attention_transfer")
        g.update(models=["convit_tiny_patch4_32"], model_overrides={"depth": 4, "embed_dim": 16})
    msg = refused(params, mutate)
    assert "attention_from: the student cifar10_fixture-convit_tiny_patch4_32-softmax-s0-atcopy-G3B" in msg
    assert "(convit) run" in msg and "allowed: vit_* models" in msg
