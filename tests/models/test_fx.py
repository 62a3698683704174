"""FX tracing of the registered karat models, as timm's own generic tests do it (issue 10, "the timm contract").

timm (tests/test_models.py of huggingface/pytorch-image-models, checked at aa4b585, Aug 2026) traces every
registered model with torchvision's ``create_feature_extractor`` through ``_create_fx_model`` (tracer
kwargs: timm's notrace modules as leaves, its notrace functions autowrapped, ``param_shapes_constant``) in
``test_model_forward_fx`` (eval, outputs must equal the eager ones exactly) and ``test_model_backward_fx``
(train, a gradient for every parameter). Its ``EXCLUDE_FX_FILTERS`` are ``vit_gi*``, ``hiera*``,
``gemma4_vit*`` (plus large models on GitHub runners, for memory): ``vit_*``, ``convit_*`` and ``swin_*`` are
all traced, so every karat ViT, ConViT and Swin model is traced here, softmax and KArAt.

How they trace: karat's ViT attention layer and the KArAt-swapped ConViT / Swin attention modules are
registered as timm notrace (leaf) modules (``karat.models.swap.fx_leaf``, timm's
``register_notrace_module``, as timm does for its own modules that branch on shapes or values); everything
else is traced. ConViT / Swin softmax models are plain timm modules and trace as timm's do.

Excluded, the way timm excludes (an fnmatch filter on the registered name, :data:`EXCLUDE_FX_FILTERS`):

* ``karat_kan_*`` (plain B-spline KANs, Table 14): not a timm family, so timm's FX support says nothing about
  it; and ``BSplineKAN.forward_features`` validates its input (the shape check that names the recipe's
  ``img_size``, and the MNIST reader's 3 identical grey channels read as one, ``torch.equal`` on values),
  branching on the input's shape and values, which symbolic tracing cannot follow (``TraceError: symbolically
  traced variables cannot be used as inputs to control flow``). :func:`test_excluded_families_still_fail`
  keeps that statement true: if the KAN becomes traceable it fails, and the filter must go.
"""
import fnmatch

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names, NodePathTracer

import karat.config.models
import karat.models  # noqa: F401  (registers the names)
from karat.models import TIMM_NAMES

EXCLUDE_FX_FILTERS = ["karat_kan_*"]

# small widths, same family and code path (as tests/models/test_timm_contract.py)
SMALL = {"vit": dict(depth=1, embed_dim=32, num_heads=2), "convit": dict(depth=3, embed_dim=8, num_heads=2),
         "swin": dict(embed_dim=8, num_heads=(1, 2), depths=(2, 2))}


def _kwargs(name):
    from karat.config.models import family
    kw = dict(SMALL[family(name[len("karat_"):])])
    if "swin" in name and "224" in name:
        kw.update(depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))
    return kw


def _create_fx_model(model, train=False):
    """timm's tests/test_models.py ``_create_fx_model``, verbatim in substance."""
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                         param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes.keys()]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]
    return create_feature_extractor(model, train_return_nodes=train_return_nodes,
                                    eval_return_nodes=eval_return_nodes, tracer_kwargs=tracer_kwargs)


TRACED = [n for n in TIMM_NAMES if not any(fnmatch.fnmatch(n, f) for f in EXCLUDE_FX_FILTERS)]
CASES = [(n, a) for n in TRACED for a in ("softmax", "G3B")]


def test_every_family_but_the_excluded_is_traced():
    fams = {karat.config.models.family(n[len("karat_"):]) for n in TRACED}
    assert fams == {"vit", "convit", "swin"}
    assert len(TRACED) == len(TIMM_NAMES) - sum(n.startswith("karat_kan_") for n in TIMM_NAMES)


@pytest.mark.parametrize("name, attention", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_model_forward_fx(name, attention):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7, attention=attention, **_kwargs(name)).eval()
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    with torch.inference_mode():
        outputs = model(x)
        fx_outputs = torch.cat(tuple(_create_fx_model(model)(x).values()))
    assert torch.all(fx_outputs == outputs)
    assert outputs.shape == (1, 7) and not torch.isnan(outputs).any()


@pytest.mark.parametrize("name, attention", [c for c in CASES if "patch16_224" not in c[0]],
                         ids=[f"{n}-{a}" for n, a in CASES if "patch16_224" not in n])
def test_model_backward_fx(name, attention):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=42, attention=attention, **_kwargs(name)).train()
    num_params = sum(p.numel() for p in model.parameters())
    fx_model = _create_fx_model(model, train=True)
    x = torch.randn(2, *model.pretrained_cfg["input_size"])
    outputs = torch.cat(tuple(fx_model(x).values()))
    outputs.mean().backward()
    for n, p in fx_model.named_parameters():
        assert p.grad is not None, f"No gradient for {n}"
    assert sum(p.grad.numel() for p in fx_model.parameters() if p.grad is not None) == num_params
    assert outputs.shape[-1] == 42 and not torch.isnan(outputs).any()


@pytest.mark.parametrize("name", ["karat_vit_tiny_patch4_32", "karat_convit_tiny_patch4_32", "karat_swin_tiny_w7_56"])
def test_without_the_leaf_registration_karat_attention_does_not_trace(name):
    """The leaf registration is what makes KArAt trace: without it the tracer walks into the operator's N
    check and fails (a wrong set-up is caught, not silently traced)."""
    from karat.models import swap
    model = timm.create_model(name, num_classes=7, attention="G3B", **_kwargs(name)).eval()
    karat_classes = {swap.KArAtAttention, *swap._CLASSES.values()}
    leaves = [m for m in get_notrace_modules() if m not in karat_classes]
    tracer_kwargs = dict(leaf_modules=leaves, autowrap_functions=get_notrace_functions(), param_shapes_constant=True)
    with pytest.raises((torch.fx.proxy.TraceError, ValueError)):
        get_graph_node_names(model, tracer_kwargs=tracer_kwargs)


@pytest.mark.parametrize("name", [n for n in TIMM_NAMES if n not in TRACED])
def test_excluded_families_still_fail(name):
    model = timm.create_model(name, num_classes=7).eval()
    with pytest.raises(torch.fx.proxy.TraceError, match="control flow"):
        _create_fx_model(model)
