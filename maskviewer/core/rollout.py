"""Attention rollout and gradient-weighted rollout (transformer attribution), in numpy.

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): per
layer the heads are fused (mean, max or min), optionally the lowest fraction of the fused
weights is discarded (set to 0; the class token's attention to itself is kept, as in the
common ``vit-explain`` recipe), the identity is added for the residual connection and every
row is normalised to sum 1; the layers' matrices are multiplied, last layer on the left:
``R = Â_L · … · Â_1``. Row ``t`` of ``R`` says how much each input token flows into token ``t``.

Gradient-weighted rollout / transformer attribution (Chefer, Gur & Wolf 2021, "Generic
Attention-model Explainability"): per layer ``Ā = mean_heads((∇A ⊙ A)⁺)`` with ``∇A`` the
gradient of the class score with respect to the attention weights, and ``R ← R + Ā · R``
starting from the identity.

The map over the image is the row of the class token (the first token) when the model has
extra tokens, otherwise the mean of all rows (a model that pools its tokens has no single
token that decides); the extra tokens' columns are left out and the rest reshaped to the grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskviewer.core.tokens import TokenGrid

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: np.ndarray, fusion: str = "mean") -> np.ndarray:
    """``(heads, N, N)`` -> ``(N, N)``: the heads' mean, max or min."""
    a = np.asarray(attn, dtype=np.float64)
    if fusion == "mean":
        return a.mean(axis=0)
    if fusion == "max":
        return a.max(axis=0)
    if fusion == "min":
        return a.min(axis=0)
    raise ValueError(f"Unknown head fusion {fusion!r}; choose one of {', '.join(HEAD_FUSIONS)}.")


def discard_lowest(fused: np.ndarray, fraction: float) -> np.ndarray:
    """A copy of ``fused`` with its lowest ``fraction`` of entries set to 0 (entry (0, 0) kept)."""
    out = np.array(fused, dtype=np.float64, copy=True)
    k = int(out.size * float(fraction))
    if k <= 0:
        return out
    flat = out.reshape(-1)
    lowest = np.argpartition(flat, k - 1)[:k]
    lowest = lowest[lowest != 0]
    flat[lowest] = 0.0
    return out


def rollout(
    attentions: Sequence[np.ndarray], fusion: str = "mean", discard: float = 0.0
) -> np.ndarray:
    """The rolled-out attention ``(N, N)`` of one image through its layers (first layer first).

    Parameters
    ----------
    attentions : sequence of ndarray
        Each layer's ``(heads, N, N)`` attention weights (rows: queries), in model order.
    fusion : str
        How heads are fused: ``"mean"``, ``"max"`` or ``"min"``.
    discard : float
        Fraction in [0, 1) of each fused matrix's lowest weights set to 0 before the identity.
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"The discard fraction must be in [0, 1), not {discard}.")
    result: np.ndarray | None = None
    for attn in attentions:
        fused = discard_lowest(fuse_heads(attn, fusion), discard) if discard else fuse_heads(attn, fusion)
        a = fused + np.eye(fused.shape[-1])
        a = a / a.sum(axis=-1, keepdims=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("Rollout needs at least one attention layer.")
    return result


def rollout_row(
    attentions: Sequence[np.ndarray], fusion: str = "mean", discard: float = 0.0, token: int | None = None,
    extra: int = 0,
) -> np.ndarray:
    """One row of :func:`rollout` — what the map shows — at a vector-matrix product per layer.

    Row ``token`` (None: row 0 when ``extra`` > 0, else the mean of all rows) of
    ``Â_L · … · Â_1`` is ``e_token · Â_L · … · Â_1``, computed last layer first.
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"The discard fraction must be in [0, 1), not {discard}.")
    if not attentions:
        raise ValueError("Rollout needs at least one attention layer.")
    n = np.asarray(attentions[0]).shape[-1]
    if token is None:
        v = np.eye(n)[0] if extra else np.full(n, 1.0 / n)
    else:
        v = np.eye(n)[int(token)]
    for attn in reversed(list(attentions)):
        fused = discard_lowest(fuse_heads(attn, fusion), discard) if discard else fuse_heads(attn, fusion)
        fused[np.diag_indices(n)] += 1.0
        v = (v / fused.sum(axis=-1)) @ fused
    return v


def gradient_rollout(attentions: Sequence[np.ndarray], gradients: Sequence[np.ndarray]) -> np.ndarray:
    """Chefer et al.'s relevance ``(N, N)``: ``R ← R + mean_h((∇A ⊙ A)⁺) · R`` from the identity.

    ``attentions`` and ``gradients``: each layer's ``(heads, N, N)``, first layer first.
    """
    r: np.ndarray | None = None
    for attn, grad in zip(attentions, gradients, strict=True):
        cam = np.maximum(np.asarray(grad, np.float64) * np.asarray(attn, np.float64), 0.0).mean(axis=0)
        if r is None:
            r = np.eye(cam.shape[-1])
        r = r + cam @ r
    if r is None:
        raise ValueError("Attribution needs at least one attention layer.")
    return r


def token_row(matrix: np.ndarray, grid: TokenGrid, token: int | None = None) -> np.ndarray:
    """Row ``token`` of an ``(N, N)`` matrix over the grid ``(grid_h, grid_w)``.

    ``token`` None: the class token (row 0) when there are extra tokens, else the mean of all
    rows. The extra tokens' columns are left out.
    """
    m = np.asarray(matrix)
    if m.shape[-1] != grid.n_tokens:
        raise ValueError(f"The attention covers {m.shape[-1]} tokens; the grid needs {grid.n_tokens}.")
    if token is None:
        row = m[0] if grid.extra else m.mean(axis=0)
    else:
        row = m[int(token)]
    return np.asarray(row[grid.extra:], np.float32).reshape(grid.grid_h, grid.grid_w)


def row_to_grid(row: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """A row over all tokens -> ``(grid_h, grid_w)``, the extra tokens left out."""
    row = np.asarray(row)
    if row.shape[-1] != grid.n_tokens:
        raise ValueError(f"The attention covers {row.shape[-1]} tokens; the grid needs {grid.n_tokens}.")
    return np.asarray(row[grid.extra:], np.float32).reshape(grid.grid_h, grid.grid_w)


def head_maps(attn: np.ndarray, grid: TokenGrid, token: int | None = None) -> np.ndarray:
    """``(heads, grid_h, grid_w)``: where token ``token`` attends in each head (see :func:`token_row`)."""
    return np.stack([token_row(a, grid, token) for a in np.asarray(attn)])


def unit(m: np.ndarray) -> np.ndarray:
    """``m`` divided by its maximum (zeros when that is not positive), float32."""
    m = np.asarray(m, np.float32)
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)
