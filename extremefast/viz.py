"""PNG figures: crop overlays (paper figs. 2 and 4), Dice-per-round curves (fig. 6) and
contact sheets (one tile per case of a collection, to review it at a glance)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_overlay(path, image, probability, *, points=None, scribble=None, truth=None, title: str = "",
                 extra: dict | None = None, label: str = "pseudo label") -> Path:
    """Three orthogonal slices through the crop: image, probability (and ``extra`` maps)
    as colour, the clicks, the scribbles, and the true outline when given."""
    plt = _pyplot()
    image = np.asarray(image)
    prob = np.asarray(probability)
    centre = _centre(prob, points)
    maps = {label: prob, **(extra or {})}
    fig, axes = plt.subplots(len(maps), 3, figsize=(10.8, 3.4 * len(maps) + 0.6), squeeze=False, layout="constrained")
    for row, (name, m) in enumerate(maps.items()):
        for ax_i, axis in enumerate(range(3)):
            ax = axes[row, ax_i]
            idx = [slice(None)] * 3
            idx[axis] = int(centre[axis])
            sl = tuple(idx)
            ax.imshow(image[sl].T, cmap="gray", origin="lower", vmin=0, vmax=1)
            ax.imshow(np.ma.masked_less(m[sl].T, 0.05), cmap=_PROBABILITY_CMAP, alpha=0.45, origin="lower", vmin=0, vmax=1)
            if truth is not None and np.asarray(truth)[sl].any():
                ax.contour(np.asarray(truth)[sl].T.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            if scribble is not None:
                ys, xs = np.nonzero(np.asarray(scribble)[sl])
                ax.plot(ys, xs, ",", color="yellow")
            if points is not None:
                other = [a for a in range(3) if a != axis]
                p = np.asarray(points)
                near = np.abs(p[:, axis] - centre[axis]) < 6
                ax.plot(p[near, other[0]], p[near, other[1]], "x", color="yellow", ms=7, mew=2)
            ax.set_title(f"{name}: axis {axis} = {int(centre[axis])}", fontsize=8)
            ax.set_axis_off()
    colours = plt.cm.ScalarMappable(cmap=_PROBABILITY_CMAP, norm=plt.Normalize(0, 1))
    fig.colorbar(colours, ax=axes, shrink=0.8, label="probability (shown from 0.05)")
    _legend(fig, plt, truth=truth is not None, scribble=scribble is not None, points=points is not None)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, plt)


_PROBABILITY_CMAP = "autumn"  # red (low) to yellow (high) over the grey image


def _legend(fig, plt, *, truth: bool, scribble: bool, points: bool) -> None:
    """What the marks of an overlay mean, under the panels."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="cyan", lw=1, label="reference mask outline")] if truth else []
    if scribble:
        handles.append(Line2D([], [], color="yellow", marker=".", ls="none", ms=3, label="geodesic scribbles"))
    if points:
        handles.append(Line2D([], [], color="yellow", marker="x", ls="none", ms=7, mew=2,
                              label="extreme-point clicks (within 6 slices)"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


def save_curves(path, rounds: list[int], curves: dict[str, list[float]], ylabel: str = "Dice",
                title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(rounds[: len(values)], values, marker="o", label=name)
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, plt)


def contact_tile(image, mask, points, title: str, margin: int = 12) -> dict:
    """One case of a contact sheet: the axial slice (axis 2) through the clicks' centre,
    cut to the clicks' box plus ``margin`` voxels, with the mask's outline and the clicks
    within three slices. ``image`` is normalised to [0, 1]; ``mask`` may be None."""
    image = np.asarray(image, dtype=np.float32)
    p = np.asarray(points, dtype=np.float64)
    k = int(np.clip(np.rint(p[:, 2].mean()), 0, image.shape[2] - 1))
    lo = np.maximum(np.floor(p[:, :2].min(axis=0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(p[:, :2].max(axis=0)).astype(int) + margin + 1, image.shape[:2])
    window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), k)
    near = np.abs(p[:, 2] - k) <= 3
    return {"image": image[window].astype(np.float16),
            "mask": None if mask is None else (np.asarray(mask)[window] >= 0.5),
            "points": p[near, :2] - lo, "title": title}


def save_contact_sheet(path, tiles: list[dict], columns: int = 6, title: str = "") -> Path:
    """All ``tiles`` (from :func:`contact_tile`) on one PNG, ``columns`` per row."""
    plt = _pyplot()
    n = max(1, len(tiles))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    # constrained layout keeps the page title and the legend clear of the first and last row's titles
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows + 0.8), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, tile in zip(axes.ravel(), tiles):
        ax.imshow(tile["image"].astype(np.float32).T, cmap="gray", origin="lower", vmin=0, vmax=1)
        if tile["mask"] is not None and tile["mask"].any():
            ax.contour(tile["mask"].T.astype(float), levels=[0.5], colors="orange", linewidths=0.8)
        if len(tile["points"]):
            ax.plot(tile["points"][:, 0], tile["points"][:, 1], "x", color="yellow", ms=5, mew=1.5)
        ax.set_title(tile["title"], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color="orange", lw=1, label="mask outline"),
                        Line2D([], [], color="yellow", marker="x", ls="none", ms=5, mew=1.5,
                               label="clicks (within 3 slices)")],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return _save(fig, path, plt)


def _centre(prob, points):
    if prob.max() >= 0.5:
        return np.round(np.argwhere(prob >= 0.5).mean(axis=0)).astype(int)
    if points is not None:
        return np.round(np.asarray(points).mean(axis=0)).astype(int)
    return np.array(prob.shape) // 2


def _save(fig, path, plt) -> Path:
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    return Path(path)
