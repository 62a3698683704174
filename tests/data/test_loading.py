"""Loaders: labels stay aligned with images through every transform, determinism, DDP sharding, recipes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from karat.data.loading import build_eval_loader, build_train_loader
from karat.data.prepare import PreparedDataset
from karat.data.recipe import IMAGENET_MEAN, IMAGENET_STD, validate_data_recipe

from .conftest import REPO

N, C = 120, 10
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _dataset(n=N, size=32) -> PreparedDataset:
    """Constant-colour images: channel 0/1 encode the image's index, channel 2 encodes its label."""
    idx = np.arange(n)
    labels = (idx * 7) % C
    img = np.zeros((n, size, size, 3), dtype=np.uint8)
    img[..., 0] = (idx % 256)[:, None, None]
    img[..., 1] = (idx // 256)[:, None, None] * 50
    img[..., 2] = (labels * 20 + 10)[:, None, None]
    return PreparedDataset(img, labels.astype(np.int64), img[:40].copy(), labels[:40].astype(np.int64),
                           [str(c) for c in range(C)], {})


def _pixels(x):
    """Back to 0..255 values of the image's centre pixel."""
    x = x.cpu() * STD * 255 + MEAN * 255
    h, w = x.shape[-2:]
    return x[:, :, h // 2, w // 2].round().long()


def _ids(x):
    p = _pixels(x)
    return (p[:, 0] + p[:, 1] // 50 * 256).numpy()


def _recipe(**kw):
    base = dict(img_size=32, crop="pad_crop", padding=4, hflip=0.5, color_jitter=0.0, auto_augment=None,
                random_erasing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0)
    base.update(kw)
    return base


@pytest.mark.parametrize("recipe", [
    _recipe(),
    _recipe(crop="random_resized_crop", img_size=48, scale=[0.3, 1.0]),
    _recipe(crop="none", img_size=40),
], ids=["pad_crop", "random_resized_crop_upsampled", "resize"])
def test_device_path_keeps_labels_aligned_and_covers_each_image_once(recipe):
    ds = _dataset()
    loader = build_train_loader(ds, recipe, batch_size=16, seed=3, device="cpu")
    assert loader.mode == "device" and not loader.soft_targets and len(loader) == N // 16
    seen = []
    for x, y in loader:
        assert x.shape == (16, 3, recipe["img_size"], recipe["img_size"]) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        ids = _ids(x)
        np.testing.assert_array_equal(ds.train_labels[ids], y.numpy())
        seen.extend(ids.tolist())
    assert len(set(seen)) == len(seen) == len(loader) * 16


def test_pad_crop_and_flip_move_pixels_like_torchvision():
    # One image with a distinct pixel: after pad-crop/flip it must appear shifted by the same offset
    # in every channel, and zero padding enters from the border.
    img = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    img[0, 10, 5] = 255
    ds = PreparedDataset(np.repeat(img, 16, 0), np.zeros(16, dtype=np.int64), img, np.zeros(1, dtype=np.int64),
                         ["a"], {})
    x, _ = next(iter(build_train_loader(ds, _recipe(), batch_size=16, seed=0, device="cpu")))
    v = x * STD * 255 + MEAN * 255
    for i in range(16):
        hot = (v[i, 0] > 128).nonzero()
        assert len(hot) == 1
        r, c = hot[0].tolist()
        assert abs(r - 10) <= 4 and (abs(c - 5) <= 4 or abs((31 - c) - 5) <= 4)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("alphas", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)], ids=["mixup", "cutmix", "both"])
def test_mixup_cutmix_soft_targets_match_the_mixed_pixels(mode, alphas):
    ds = _dataset()
    r = _recipe(crop="none", mixup_alpha=alphas[0], cutmix_alpha=alphas[1], mixup_prob=1.0, mixup_mode=mode)
    loader = build_train_loader(ds, r, batch_size=16, seed=1, device="cpu", label_smoothing=0.0)
    assert loader.soft_targets
    for step, (x, t) in enumerate(loader):
        assert t.shape == (16, C)
        torch.testing.assert_close(t.sum(1), torch.ones(16))
        v = (x * STD * 255 + MEAN * 255)[:, 2].mean((1, 2))          # mean label channel
        want = t @ (torch.arange(C, dtype=torch.float32) * 20 + 10)  # the targets' mixture of label colours
        torch.testing.assert_close(v, want, atol=0.05, rtol=0)
        if step == 2:
            break


def test_label_smoothing_is_folded_into_soft_targets():
    r = _recipe(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=1e-12)   # mixing on, but never drawn
    x, t = next(iter(build_train_loader(_dataset(), r, batch_size=8, seed=0, device="cpu", label_smoothing=0.1)))
    assert torch.allclose(t.min(1).values, torch.full((8,), 0.01))
    assert torch.allclose(t.max(1).values, torch.full((8,), 0.91))
    np.testing.assert_array_equal(_dataset().train_labels[_ids(x)], t.argmax(1).numpy())


def test_colour_jitter_and_random_erasing_keep_labels_aligned():
    ds = _dataset()
    r = _recipe(color_jitter=0.4, random_erasing=1.0)
    loader = build_train_loader(ds, r, batch_size=20, seed=0, device="cpu")
    x, y = next(iter(loader))
    assert x.shape == (20, 3, 32, 32) and torch.isfinite(x).all()
    # Erasing fills a region with N(0, 1) noise: some pixels now differ from their image's constant colour.
    assert (x.std((2, 3)) > 0.1).any()
    x0, y0 = next(iter(build_train_loader(ds, _recipe(), batch_size=20, seed=0, device="cpu")))
    torch.testing.assert_close(y, y0)                               # same order, independent of augmentation


def test_order_and_augmentation_depend_only_on_seed_epoch_rank():
    ds = _dataset()
    r = _recipe(color_jitter=0.3, random_erasing=0.5, mixup_alpha=0.8, cutmix_alpha=1.0)
    a = build_train_loader(ds, r, batch_size=16, seed=7, device="cpu")
    b = build_train_loader(ds, r, batch_size=16, seed=7, device="cpu")
    a.set_epoch(3), b.set_epoch(3)
    for (xa, ta), (xb, tb) in zip(a, b):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ta, tb)
    first = [x for x, _ in a]
    again = [x for x, _ in a]                                       # re-iterating an epoch repeats it
    torch.testing.assert_close(first[0], again[0])
    a.set_epoch(4)
    assert not torch.equal(next(iter(a))[0], first[0])
    c = build_train_loader(ds, r, batch_size=16, seed=8, device="cpu")
    c.set_epoch(3)
    assert not torch.equal(next(iter(c))[0], first[0])


def test_ddp_shards_the_same_global_batch():
    ds = _dataset()
    single = build_train_loader(ds, _recipe(), batch_size=16, seed=2, device="cpu")
    ranks = [build_train_loader(ds, _recipe(), batch_size=16, seed=2, device="cpu", rank=k, world_size=2)
             for k in range(2)]
    for ld in (single, *ranks):
        ld.set_epoch(1)
    assert len(ranks[0]) == len(single)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert x0.shape[0] == x1.shape[0] == 8
        np.testing.assert_array_equal(np.concatenate([_ids(x0), _ids(x1)]), _ids(x))
        torch.testing.assert_close(torch.cat([y0, y1]), y)
    with pytest.raises(ValueError, match="divisible"):
        build_train_loader(ds, _recipe(), batch_size=15, seed=0, device="cpu", world_size=2, rank=0)


def test_worker_path_randaugment_is_deterministic_across_worker_counts():
    ds = _dataset(n=24)
    r = _recipe(auto_augment="rand-m15-n2-mstd1.0-inc1", random_erasing=0.25, color_jitter=0.4)
    a = build_train_loader(ds, r, batch_size=8, seed=0, device="cpu", num_workers=0)
    b = build_train_loader(ds, r, batch_size=8, seed=0, device="cpu", num_workers=1)
    assert a.mode == "workers"
    state = torch.get_rng_state()
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 3, 32, 32)
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
    assert torch.equal(state, torch.get_rng_state())                # caller's RNG untouched


def test_worker_path_keeps_labels_aligned():
    ds = _dataset(n=32)
    loader = build_train_loader(ds, _recipe(), batch_size=8, seed=0, device="cpu", mode="workers", num_workers=0)
    for x, y in loader:
        np.testing.assert_array_equal(ds.train_labels[_ids(x)], y.numpy())


def test_eval_loader_keeps_order_and_resizes_with_crop_pct():
    ds = _dataset()
    loader = build_eval_loader(ds, _recipe(img_size=48, eval_crop_pct=0.9), batch_size=16, device="cpu")
    assert len(loader) == 3
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (40, 3, 48, 48)
    np.testing.assert_array_equal(_ids(x), np.arange(40))
    np.testing.assert_array_equal(y.numpy(), ds.test_labels)
    x2, _ = next(iter(build_eval_loader(ds, _recipe(eval_crop_pct=1.0), batch_size=40, device="cpu", split="train")))
    np.testing.assert_array_equal(_ids(x2), np.arange(40))


def test_auto_augment_gets_timms_check_where_asked_and_in_the_loaders(monkeypatch):
    """'rand-w9' passes the grammar (w<N>: a weights index) but timm refuses it: the grammar check alone lets it
    through, the authoritative one (asked for, or timm already loaded, as in this process) and both loaders
    refuse it with the field named, and a process that never loads timm does not import it to validate."""
    bad = {"img_size": 32, "auto_augment": "rand-w9"}
    assert validate_data_recipe(bad, authoritative=False)["auto_augment"] == "rand-w9"
    for kw in ({"authoritative": True}, {}):
        with pytest.raises(ValueError, match="auto_augment = 'rand-w9'.*valid timm RandAugment"):
            validate_data_recipe(bad, **kw)
    # the loaders ask for timm's check even where timm is not loaded yet
    import karat.data.recipe as recipe_mod
    monkeypatch.setattr(recipe_mod, "_timm_loaded", lambda: False)
    assert validate_data_recipe(bad)["auto_augment"] == "rand-w9"
    ds = _dataset(n=24)
    for build in (lambda: build_train_loader(ds, _recipe(auto_augment="rand-w9"), batch_size=8, seed=0, device="cpu"),
                  lambda: build_eval_loader(ds, _recipe(auto_augment="rand-w9"), batch_size=8, device="cpu")):
        with pytest.raises(ValueError, match="auto_augment = 'rand-w9'"):
            build()
    code = ("import sys; from karat.data.recipe import validate_data_recipe as v; "
            "v({'img_size': 32, 'auto_augment': 'rand-w9'}); print(sorted(m for m in ('timm', 'torch') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-2000:]


def test_recipe_validation_is_strict_and_names_the_problem():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour_jitter'\]"):
        validate_data_recipe({"img_size": 32, "colour_jitter": 0.4})
    with pytest.raises(ValueError, match="crop = 'center'.*random_resized_crop"):
        validate_data_recipe({"img_size": 32, "crop": "center"})
    with pytest.raises(ValueError, match="scale"):
        validate_data_recipe({"img_size": 32, "scale": [0.5, 0.1]})
    with pytest.raises(ValueError, match="auto_augment"):
        validate_data_recipe({"img_size": 32, "auto_augment": "randaugment-strong"})
    with pytest.raises(ValueError, match="mixup_mode"):
        validate_data_recipe({"img_size": 32, "mixup_mode": "sample"})
    with pytest.raises(ValueError, match="img_size is required"):
        validate_data_recipe({})
    with pytest.raises(ValueError, match="hflip = 1.5"):
        validate_data_recipe({"img_size": 32, "hflip": 1.5})
    out = validate_data_recipe({"img_size": 32})
    assert out["mixup_alpha"] == 0.0 and out["mean"] == list(IMAGENET_MEAN)


def test_every_recipe_in_params_yaml_validates():
    from karat.config import load_params, resolve_recipe
    params = load_params(REPO / "params.yaml")
    for name in params["recipes"]:
        d = validate_data_recipe(resolve_recipe(params, name)["data"])
        # the paper's 224, CIFAR-native 32, KANbeFair's 28 (Table 14), the families profile's 56 px Swin
        assert d["img_size"] in (28, 32, 56, 224), (name, d["img_size"])
    paper = validate_data_recipe(resolve_recipe(params, "paper")["data"])
    assert paper["auto_augment"] == "rand-m15-n2-mstd1.0-inc1" and paper["eval_crop_pct"] == 0.9


@pytest.mark.parametrize("split", ["test", "train"])
def test_loaders_take_read_only_memmapped_labels_without_a_warning(tmp_path, split):
    """Prepared labels are read-only memmaps; torch.from_numpy of a read-only array warns ("The given NumPy
    array is not writable") on every batch. Neither loader may pass one to torch (issue 21)."""
    import warnings
    ds = _dataset()
    for name in ("train_labels", "test_labels"):
        path = tmp_path / f"{name}.npy"
        np.save(path, getattr(ds, name))
        setattr(ds, name, np.load(path, mmap_mode="r"))
    assert not ds.test_labels.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys = [y for _, y in build_eval_loader(ds, _recipe(eval_crop_pct=1.0), batch_size=16, device="cpu",
                                              split=split)]
        np.testing.assert_array_equal(torch.cat(ys).numpy(), getattr(ds, f"{split}_labels"))
        for mode in ("device", "workers"):
            train = build_train_loader(ds, _recipe(), batch_size=16, seed=0, device="cpu", mode=mode,
                                       num_workers=0)
            assert len([y for _, y in train]) == len(train)
