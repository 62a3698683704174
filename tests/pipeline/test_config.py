"""params.yaml validation and profile expansion (karat.config)."""
import copy
from pathlib import Path

import pytest
import yaml

from karat.config import ParamsError, expand_profile, load_params, resolve_recipe, validate_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def broken(params, mutate):
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(ParamsError) as err:
        validate_params(p)
    return str(err.value)


def test_the_committed_params_are_valid_and_every_profile_expands(params):
    sizes = {name: len(expand_profile(params, name).runs) for name in params["profiles"]}
    assert sizes["ci"] == 10   # ci: softmax, G3B, G3B fine-tuned, an attention-transfer student; ConViT x3, Swin x2, KAN
    assert sizes["demo"] == 4    # ViT-Tiny: softmax, G3B, G3U, DoG-B
    assert sizes["families"] == 6  # 3 ConViT, 2 Swin, 1 KAN (Tables 3 and 14 at demo scale)
    assert sizes["paper"] > 100


def test_unknown_key_is_named(params):
    msg = broken(params, lambda p: p["profiles"]["ci"].update(epochs=3))
    assert "profiles.ci" in msg and "epochs" in msg and "allowed" in msg


def test_wrong_type_is_named(params):
    msg = broken(params, lambda p: p["subsets"]["ci"].update(train_per_class="twenty"))
    assert "subsets.ci.train_per_class" in msg and "twenty" in msg


def test_impossible_value_is_named(params):
    msg = broken(params, lambda p: p["profiles"]["ci"]["groups"][0].update(seeds=[-1]))
    assert "profiles.ci.groups.0.seeds.0" in msg


def test_undefined_references_are_named(params):
    msg = broken(params, lambda p: p["profiles"]["ci"]["groups"][0].update(attentions=["G4X"]))
    assert "G4X" in msg and "attentions" in msg
    msg = broken(params, lambda p: p["profiles"]["ci"]["groups"][0].update(recipe="nope"))
    assert "nope" in msg and "recipe" in msg
    msg = broken(params, lambda p: p["profiles"]["ci"]["groups"][0].update(models=["vit_huge_patch14_224"]))
    assert "vit_huge_patch14_224" in msg
    msg = broken(params, lambda p: p.update(profile="nightly"))
    assert "nightly" in msg


def test_recipe_inheritance_cycle_is_an_error(params):
    def cycle(p):
        p["recipes"]["paper"]["inherit"] = "ci"
    assert "cycle" in broken(params, cycle)


def test_recipe_inheritance_and_overrides(params):
    demo = resolve_recipe(params, "demo")
    assert demo["train"]["eps"] == params["recipes"]["paper"]["train"]["eps"]     # from paper
    assert demo["train"]["lr"] == params["recipes"]["demo"]["train"]["lr"]        # own value wins
    assert demo["data"]["img_size"] == 32                                         # from cifar32
    imagenet = resolve_recipe(params, "paper", profile="paper", dataset="imagenet")
    assert imagenet["train"]["batch_size"] == 128 and imagenet["train"]["lr"] == 1.25e-4
    cifar = resolve_recipe(params, "paper", profile="paper", dataset="cifar10")
    assert cifar["train"]["batch_size"] == 32 and cifar["train"]["lr"] == 3.125e-5


def test_run_specs(params):
    prof = expand_profile(params, "ci")
    spec = prof.runs["cifar10_fixture-vit_tiny_patch4_32-G3B-s0"]
    assert spec.attention == {"basis": "fourier", "grid_size": 3, "mode": "blockwise"}
    assert spec.model_kwargs == {"depth": 2}
    assert spec.out_dir == Path("runs/ci/cifar10_fixture-vit_tiny_patch4_32-G3B-s0")
    assert spec.state_dir.parts[0] == ".karat_state"
    assert spec.prepared_dir == Path("data/prepared/cifar10_fixture/ci")
    assert yaml.safe_load(yaml.safe_dump(spec.to_dict()))["run_id"] == spec.run_id
    assert prof.analyses["functions"] == ["cifar10_fixture-vit_tiny_patch4_32-G3B-s0"]


def test_shared_runs_between_tables_are_trained_once(params):
    prof = expand_profile(params, "paper")
    assert prof.runs["cifar10-vit_tiny_patch16_224-G3B-s0"].group == "table1_tiny_small"


def test_analysis_run_selector_must_exist(params):
    p = copy.deepcopy(params)
    p["profiles"]["ci"]["analyses"]["spectra"]["runs"] = ["G9B"]
    with pytest.raises(ParamsError, match="G9B"):
        expand_profile(p, "ci")


def test_cli_validate(tools):
    import subprocess
    res = subprocess.run(["python", "-m", "karat", "validate"], cwd=REPO, capture_output=True, text=True,
                         env=tools.env())
    assert res.returncode == 0 and "params.yaml is valid" in res.stdout


def test_cli_reports_bad_params_before_any_work(tools, tmp_path):
    import subprocess
    bad = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text().replace("profile: demo", "profile: demo\nextra_key: 1", 1)
    bad.write_text(text)
    res = subprocess.run(["python", "-m", "karat", "validate", "--params", str(bad)], cwd=REPO,
                         capture_output=True, text=True, env=tools.env())
    assert res.returncode == 2 and "extra_key" in res.stderr


def test_recipe_sections_are_validated_strictly(params):
    msg = broken(params, lambda p: p["recipes"]["demo"]["data"].update(crop="zoom"))
    assert "recipes.demo.data" in msg and "zoom" in msg
    msg = broken(params, lambda p: p["recipes"]["ci"].setdefault("data", {}).update(colour_jitter=0.4))
    assert "colour_jitter" in msg


def test_attention_variants_are_validated(params):
    msg = broken(params, lambda p: p["attentions"].update(bad={"basis": "fourier", "grid_size": 0}))
    assert "attentions.bad" in msg and "grid_size" in msg
    msg = broken(params, lambda p: p["attentions"].update(bad={"basis": "chebyshev"}))
    assert "chebyshev" in msg


def test_orchestrators_do_not_import_torch(tools):
    import subprocess
    code = ("import sys, karat.config, karat.pipeline; karat.pipeline.stages('demo'); "
            "print('torch' in sys.modules)")
    out = subprocess.run(["python", "-c", code], cwd=REPO, capture_output=True, text=True, env=tools.env())
    assert out.stdout.strip() == "False", out.stderr



def _dvc_reads_the_same(text: str) -> bool:
    """DVC's YAML reader (ruamel.yaml, safe; with ruamel.yaml.clib, as scripts/install.sh installs it, a libyaml
    parser) reads ``text`` to the same values as the reader the pipeline uses."""
    from ruamel.yaml import YAML
    from ruamel.yaml import YAMLError as RuamelError
    reader = YAML(typ="safe")
    assert reader.Parser.__name__ == "CParser", "ruamel.yaml.clib is not installed"
    try:
        return reader.load(text) == yaml.safe_load(text)
    except RuamelError:
        return False


def test_params_yaml_is_read_the_same_by_dvcs_libyaml_reader():
    """DVC parses params.yaml once per stage; with libyaml that is fast, but that libyaml refuses what the pure
    reader allows, e.g. an unquoted URL in a flow mapping ({url: http://...}): DVC would fail on every stage."""
    assert _dvc_reads_the_same((REPO / "params.yaml").read_text())
    assert not _dvc_reads_the_same("files:\n  a.zip: {url: http://example.org/a.zip, md5: 0}\n")


def _set_param_as_dvc_does(path: Path) -> str:
    """What `dvc exp run --set-param recipes.demo.train.report_weights=raw_last` does to the file: DVC's own
    round trip (dvc.utils.serialize.modify_yaml, ruamel.yaml without preserved quotes)."""
    from dvc.utils.serialize import modify_yaml
    with modify_yaml(str(path)) as data:
        data["recipes"]["demo"]["train"]["report_weights"] = "raw_last"
    return path.read_text()


def test_params_yaml_stays_readable_after_dvc_set_param(tmp_path):
    """`dvc exp run --set-param` rewrites params.yaml (quotes dropped); DVC must still read what it wrote, to the
    values the pipeline reads. A quoted URL in a flow mapping passes the test above but not this one."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    text = _set_param_as_dvc_does(params)
    assert yaml.safe_load(text)["recipes"]["demo"]["train"]["report_weights"] == "raw_last"
    assert _dvc_reads_the_same(text)
    flow = tmp_path / "flow.yaml"
    flow.write_text('recipes: {demo: {train: {report_weights: ema_best}}}\n'
                    'files:\n  a.zip: {url: "http://example.org/a.zip", md5: 0}\n')
    assert _dvc_reads_the_same(flow.read_text())
    assert not _dvc_reads_the_same(_set_param_as_dvc_does(flow))


def test_params_are_read_with_libyaml_to_the_same_objects():
    """karat.config reads YAML with libyaml's parser where PyYAML has it (about 0.5 s less at every stage's and
    every Snakemake job's start), to exactly what the pure-Python safe loader gives, for params.yaml and the
    schema; and the comparison would see a difference."""
    from karat.config import SAFE_LOADER, SCHEMA_PATH, yaml_load
    if yaml.__with_libyaml__:
        assert SAFE_LOADER is yaml.CSafeLoader
    for path in (REPO / "params.yaml", SCHEMA_PATH):
        text = path.read_text()
        assert yaml_load(text) == yaml.load(text, Loader=yaml.SafeLoader), path
    assert yaml_load("a: [1, x]\n") != yaml.load("a: [1, y]\n", Loader=yaml.SafeLoader)
