"""Loss landscape and optimiser path (PAPER Figs. 3 and 10; Li et al. 2018, §7 "trajectory PCA").

Treatment of parameters (PAPER §7.18 leaves it open): every trainable parameter — 1-D ones (biases,
LayerNorm), position embeddings and the KArAt coefficients and W — is one coordinate of θ and enters the
PCA like everything else, because the trajectory plane should show where the optimiser actually moved.
Buffers are not parameters and stay at their final values. Only the optional random directions use
filter normalisation, and there 1-D tensors get a zero direction (Li et al.'s ``--xignore biasbn``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from . import common

DEFAULTS = {"grid": 21, "extent": 1.0, "eval_batches": 4, "batch_size": 64, "directions": "pca", "seed": 0,
            "weights": "model", "device": None}
NAME = "landscape"


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    common.check_int(NAME, "grid", o["grid"], 2)
    common.check_float(NAME, "extent", o["extent"], 0.0)
    common.check_int(NAME, "eval_batches", o["eval_batches"], 1)
    common.check_int(NAME, "batch_size", o["batch_size"], 1)
    common.check_choice(NAME, "directions", o["directions"], ("pca", "random"))
    common.check_int(NAME, "seed", o["seed"], 0)
    return o


# --------------------------------------------------------------------------------------------------
# parameter vectors

def parameters(model) -> list:
    """The trainable parameters in a fixed order (shared modules appear once)."""
    return [p for p in model.parameters() if p.requires_grad]


def get_vector(model):
    import torch

    return torch.cat([p.detach().reshape(-1).float().cpu() for p in parameters(model)])


def set_vector(model, vec) -> None:
    import torch

    offset = 0
    with torch.no_grad():
        for p in parameters(model):
            n = p.numel()
            p.copy_(vec[offset:offset + n].view_as(p).to(p.dtype))
            offset += n
    if offset != vec.numel():
        raise ValueError(f"parameter vector has {vec.numel()} entries, the model {offset}")


# --------------------------------------------------------------------------------------------------
# directions

def _gram(m) -> np.ndarray:
    """m mᵀ in float64, in column chunks so that a large model never needs a float64 copy of m."""
    import torch

    e, p = m.shape
    g = torch.zeros(e, e, dtype=torch.float64)
    step = 1 << 20
    for s in range(0, p, step):
        c = m[:, s:s + step].double()
        g += c @ c.T
    return g.numpy()


def pca_directions(trajectory, final, seed: int = 0) -> dict:
    """PCA plane of a training trajectory (Li et al. 2018 §7).

    ``trajectory`` (E, P) parameter vectors of the snapshots, ``final`` (P,) the final weights. The rows
    θ_e − θ* are centred (as sklearn's PCA in Li et al.'s code) and the two leading principal axes are
    returned as orthonormal float32 vectors; coordinates of the path are (θ_e − θ*)·d_k (not centred), so
    the final weights project to the origin. If the trajectory spans fewer than two dimensions the missing
    axis is a seeded random direction orthogonal to the first (``degenerate`` says so).
    """
    import torch

    m = trajectory.float() - final.float().unsqueeze(0)
    mean = m.mean(0, keepdim=True)
    mc = m - mean
    g = _gram(mc)
    evals, evecs = np.linalg.eigh(g)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    total = float(evals.sum())
    dirs, degenerate = [], []
    for k in range(2):
        lam = evals[k] if k < len(evals) else 0.0
        if total > 0 and lam > 1e-12 * total:
            u = torch.from_numpy(evecs[:, k].copy())
            d = torch.zeros(m.shape[1], dtype=torch.float64)
            step = 1 << 20
            for s in range(0, m.shape[1], step):
                d[s:s + step] = mc[:, s:s + step].double().T @ u
            dirs.append(d)
            degenerate.append(False)
        else:
            gen = torch.Generator().manual_seed(seed + k)
            dirs.append(torch.randn(m.shape[1], generator=gen, dtype=torch.float64))
            degenerate.append(True)
    # Gram-Schmidt in float64: exact orthonormality regardless of how small the second eigenvalue is.
    d1 = dirs[0] / dirs[0].norm()
    d2 = dirs[1] - (dirs[1] @ d1) * d1
    d2 = d2 / d2.norm()
    d = torch.stack([d1, d2]).float()
    evr = [float(evals[k] / total) if total > 0 and not degenerate[k] else float("nan") for k in range(2)]
    coords = (m.double() @ d.double().T).numpy()
    return {"directions": d, "explained_variance_ratio": np.array(evr), "coords": coords,
            "degenerate": degenerate}


def random_directions(model, final, seed: int = 0) -> dict:
    """Two filter-normalised Gaussian directions (Li et al. 2018): each slice along dim 0 of a ≥2-D tensor
    gets the norm of the same slice of the final weights; 1-D tensors get 0."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = [p.shape for p in parameters(model)]
    out = []
    for _ in range(2):
        parts, offset = [], 0
        for shape in shapes:
            n = int(np.prod(shape)) if len(shape) else 1
            w = final[offset:offset + n]
            if len(shape) >= 2:
                r = torch.randn(n, generator=gen).view(shape[0], -1)
                wv = w.view(shape[0], -1)
                r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12) * wv.norm(dim=1, keepdim=True)
                parts.append(r.reshape(-1))
            else:
                parts.append(torch.zeros(n))
            offset += n
        out.append(torch.cat(parts))
    return {"directions": torch.stack(out), "explained_variance_ratio": np.array([np.nan, np.nan]),
            "degenerate": [False, False]}


def project(deltas, directions) -> np.ndarray:
    """Least-squares coordinates of the rows of ``deltas`` (E, P) in span(directions) (2, P)."""
    d = directions.double()
    gram = (d @ d.T).numpy()
    rhs = (deltas.double() @ d.T).numpy()
    return np.linalg.solve(gram, rhs.T).T


# --------------------------------------------------------------------------------------------------
# loss evaluation

def evaluate(model, batches) -> tuple[float, float]:
    """Mean cross-entropy (no label smoothing) and top-1 in percent over fixed batches."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x).float()
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += int(y.numel())
    return total / n, 100.0 * correct / n


def loss_grid(model, final, directions, alphas, betas, batches, label: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Loss and top-1 at θ* + α d1 + β d2 for every (α, β); ``loss[i, j]`` at (alphas[i], betas[j])."""
    loss = np.zeros((len(alphas), len(betas)))
    acc = np.zeros_like(loss)
    d1, d2 = directions[0], directions[1]
    total = loss.size
    t0, done, next_report = time.time(), 0, 0.0
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            set_vector(model, final + float(a) * d1 + float(b) * d2)
            loss[i, j], acc[i, j] = evaluate(model, batches)
            done += 1
            if done / total >= next_report or done == total:
                common.progress(f"[landscape] {label} {done}/{total} grid points, loss {loss[i, j]:.4f}, "
                                f"{time.time() - t0:.1f}s")
                next_report += 0.1
    set_vector(model, final)
    return loss, acc


def local_minima(z: np.ndarray) -> int:
    """Interior grid points strictly below all 8 neighbours."""
    if min(z.shape) < 3:
        return 0
    c = z[1:-1, 1:-1]
    is_min = np.ones_like(c, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            is_min &= c < z[1 + di:z.shape[0] - 1 + di, 1 + dj:z.shape[1] - 1 + dj]
    return int(is_min.sum())


def roughness(z: np.ndarray) -> float:
    """Mean |discrete Laplacian| of the interior over the loss range; 0 for a plane, larger when spiky."""
    if min(z.shape) < 3:
        return float("nan")
    lap = (z[:-2, 1:-1] + z[2:, 1:-1] + z[1:-1, :-2] + z[1:-1, 2:] - 4 * z[1:-1, 1:-1])
    span = float(z.max() - z.min())
    return float(np.abs(lap).mean() / span) if span > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# stage

def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:
    import torch

    o = check_options(options)
    device = common.pick_device(o["device"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = common.load_model(spec, o["weights"], device=device)
    final = get_vector(model)
    snaps = common.snapshot_index(spec)
    common.progress(f"[landscape] {spec.run_id}: {len(snaps)} snapshots, {final.numel():,} parameters")
    traj = torch.zeros(len(snaps), final.numel())
    scratch = common.create_model_for(spec)
    for k, (_, path) in enumerate(snaps):
        common.load_weights_into(scratch, path)
        traj[k] = get_vector(scratch)
    del scratch
    epochs = np.array([e for e, _ in snaps])
    deltas = traj - final.unsqueeze(0)

    if o["directions"] == "pca":
        plane = pca_directions(traj, final, seed=o["seed"])
        coords = plane["coords"]
        dirs = plane["directions"]
        half = [o["extent"] * float(np.abs(coords[:, k]).max()) for k in range(2)]
        half = [h if h > 0 else o["extent"] for h in half]
        ortho_err = float((dirs.double() @ dirs.double().T - torch.eye(2, dtype=torch.float64)).abs().max())
    else:
        plane = random_directions(model, final, seed=o["seed"])
        dirs = plane["directions"]
        coords = project(deltas, dirs)
        half = [o["extent"], o["extent"]]
        ortho_err = float("nan")
    alphas = np.linspace(-half[0], half[0], o["grid"])
    betas = np.linspace(-half[1], half[1], o["grid"])

    batches = common.eval_batches(spec, o["eval_batches"], o["batch_size"], device=device)
    n_images = sum(int(y.numel()) for _, y in batches)
    dirs_dev = dirs.to(device)
    final_dev = final.to(device)
    loss, acc = loss_grid(model, final_dev, dirs_dev, alphas, betas, batches, label=spec.run_id)
    path_loss = np.zeros(len(snaps))
    for k in range(len(snaps)):
        set_vector(model, traj[k].to(device))
        path_loss[k] = evaluate(model, batches)[0]
    set_vector(model, final_dev)
    final_loss, final_acc = evaluate(model, batches)

    common.save_npz(out_dir / "data.npz", alpha=alphas, beta=betas, loss=loss, accuracy=acc,
                    path_epochs=epochs, path_xy=np.asarray(coords, dtype=np.float64), path_loss=path_loss,
                    explained_variance_ratio=plane["explained_variance_ratio"])
    common.save_csv(out_dir / "path.csv", [{"epoch": int(e), "x": float(c[0]), "y": float(c[1]), "loss": float(l)}
                                           for e, c, l in zip(epochs, coords, path_loss)])
    result = common.summary(
        NAME, spec, o, device=device, method=o["directions"], n_parameters=int(final.numel()),
        n_snapshots=len(snaps), explained_variance_ratio=plane["explained_variance_ratio"].tolist(),
        degenerate_axes=plane["degenerate"],
        grid={"points": o["grid"], "alpha_range": [float(alphas[0]), float(alphas[-1])],
              "beta_range": [float(betas[0]), float(betas[-1])], "eval_images": n_images},
        final_loss=final_loss, final_top1=final_acc, min_loss=float(loss.min()), max_loss=float(loss.max()),
        local_minima=local_minima(loss), roughness=roughness(loss), orthonormality_error=ortho_err,
        parameters_included="all trainable parameters (1-D, embeddings, KArAt coefficients and W included)")
    common.write_summary(out_dir, result)
    title = common.run_title(spec)
    plot_surface(out_dir / "surface", _load(out_dir), title)
    plot_contour(out_dir / "contour", _load(out_dir), title)
    return result


# --------------------------------------------------------------------------------------------------
# figures

_load = common.load_run_data


def _axis_labels(d: dict) -> tuple[str, str]:
    evr = d["explained_variance_ratio"]
    if d["summary"].get("method") == "random":
        return "direction 1 (filter-normalised)", "direction 2 (filter-normalised)"
    return (f"PC1 ({100 * evr[0]:.1f}% of variance)" if np.isfinite(evr[0]) else "PC1",
            f"PC2 ({100 * evr[1]:.1f}% of variance)" if np.isfinite(evr[1]) else "PC2 (random, degenerate)")


def _draw_surface(ax, d: dict, title: str) -> None:
    a, b = np.meshgrid(d["alpha"], d["beta"], indexing="ij")
    ax.plot_surface(a, b, d["loss"], cmap="viridis", linewidth=0, antialiased=True, alpha=0.95)
    xl, yl = _axis_labels(d)
    ax.set_xlabel(xl, fontsize=7)
    ax.set_ylabel(yl, fontsize=7)
    ax.set_zlabel("test loss (cross-entropy)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=8)


def _draw_contour(fig, ax, d: dict, title: str) -> None:
    a, b = np.meshgrid(d["alpha"], d["beta"], indexing="ij")
    cs = ax.contourf(a, b, d["loss"], levels=20, cmap="viridis")
    ax.contour(a, b, d["loss"], levels=20, colors="k", linewidths=0.3, alpha=0.5)
    cb = fig.colorbar(cs, ax=ax)
    cb.set_label("test loss (cross-entropy)", fontsize=7)
    xy = d["path_xy"]
    ax.plot(xy[:, 0], xy[:, 1], "-o", color="tab:red", ms=3, lw=1.2, label="optimiser path")
    ep = d["path_epochs"]
    for k in sorted({0, len(ep) // 2, len(ep) - 1}):
        ax.annotate(f"ep {int(ep[k])}", xy[k], fontsize=6, color="white",
                    xytext=(3, 3), textcoords="offset points")
    ax.plot([0], [0], marker="*", color="gold", ms=10, mec="k", ls="none", label="final weights")
    xl, yl = _axis_labels(d)
    ax.set_xlabel(xl, fontsize=8)
    ax.set_ylabel(yl, fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def plot_surface(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    fig = plt.figure(figsize=(5, 4))
    _draw_surface(fig.add_subplot(1, 1, 1, projection="3d"), d, title)
    return common.save_figure(fig, base)


def plot_contour(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    _draw_contour(fig, ax, d, title)
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, kind: str = "both", **_: Any) -> Path:
    """Figs. 3 (surfaces) and 10 (contours + optimiser path) side by side from saved ``data.npz``."""
    common.check_choice(NAME, "kind", kind, ("both", "surface", "contour"))
    plt = common.pyplot()
    labels = list(run_dirs)
    if not labels:
        raise ValueError("compare: run_dirs is empty")
    rows = 2 if kind == "both" else 1
    fig = plt.figure(figsize=(4.6 * len(labels), 3.9 * rows))
    for c, label in enumerate(labels):
        d = _load(run_dirs[label])
        r = 0
        if kind in ("both", "surface"):
            _draw_surface(fig.add_subplot(rows, len(labels), c + 1, projection="3d"), d, label)
            r = 1
        if kind in ("both", "contour"):
            ax = fig.add_subplot(rows, len(labels), r * len(labels) + c + 1)
            _draw_contour(fig, ax, d, label)
    fig.suptitle("Loss landscape on the trajectory-PCA plane (test set) and optimiser path", fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, Path(out_base))
    return Path(out_base)
