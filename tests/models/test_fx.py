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

Excluded: nothing. timm's counterparts of every registered karat name (vit_*, convit_*, swin_*, and samvit_* for
the ViT-Det backbone karat_vitdet_base_patch16_224) are all traced by timm, so all are traced here, softmax and
KArAt. The plain KANs are not timm models (karat.models.registry.NOT_TIMM_MODELS) and are not registered.
"""
import fnmatch

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names, NodePathTracer

import karat.models  # noqa: F401  (registers the names)
from karat.models import TIMM_NAMES

from .test_timm_contract import family, small_kwargs as _kwargs

EXCLUDE_FX_FILTERS: list[str] = []


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


def test_every_registered_family_is_traced():
    assert {family(n) for n in TRACED} == {"vit", "convit", "swin", "vitdet"}
    assert TRACED == list(TIMM_NAMES)


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
