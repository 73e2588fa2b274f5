"""Attention as maps over the image: per-head maps, the heads × layers overview, rollout and
gradient-weighted rollout (transformer attribution), for a batch, from one capture pass.

The numbers come from :mod:`maskviewer.inference.attention` (weights, and their gradients for
a class); the recipes are the numpy ones of :mod:`maskviewer.core.rollout`. Every map is on
the token grid of the attended sequence (extra tokens left out), one per batch item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core import rollout as rec
from maskviewer.inference.attention import AttentionCapture, attention_gradients
from maskviewer.inference.probe import ProbeError


@dataclass
class AttentionMaps:
    """Maps on the token grid for a batch.

    Attributes
    ----------
    maps : ndarray
        ``(B, grid_h, grid_w)`` float32: the map of each image (per-head: their mean).
    heads : ndarray or None
        ``(B, heads, grid_h, grid_w)`` per-head maps (per-head and overview requests).
    grid : TokenGrid
    method : str
        ``"heads"``, ``"rollout"`` or ``"attribution"``.
    layer : str
        The attention layer (per-head maps), or the last layer rolled out.
    token : int or None
        The query token (None: the class token, or the mean over tokens without one).
    classes, scores : ndarray or None
        Attribution: the class explained per image and its score.
    """

    maps: np.ndarray
    heads: np.ndarray | None
    grid: Any
    method: str
    layer: str
    token: int | None = None
    classes: np.ndarray | None = None
    scores: np.ndarray | None = None
    output: str = ""
    notes: list[str] = field(default_factory=list)


def _grid(capture: AttentionCapture, weights: dict[str, np.ndarray], inputs: Any) -> Any:
    grid = capture.grid(weights, inputs)
    if grid is None:
        n = next(iter(weights.values())).shape[-1]
        raise ProbeError(
            f"The attention covers {n} tokens, which no patch grid of this image fits; give the "
            "grid and the number of extra tokens (e.g. --grid 14x14 --extra-tokens 1)."
        )
    return grid


def _check_token(token: int | None, grid: Any) -> None:
    if token is not None and not 0 <= token < grid.n_tokens:
        raise ProbeError(f"Token {token} does not exist: the layer has {grid.n_tokens} tokens (0 to {grid.n_tokens - 1}).")


def head_maps(capture: AttentionCapture, inputs: Any, layer: str, token: int | None = None) -> AttentionMaps:
    """Where ``token`` (the class token by default) attends in each head of ``layer``, and the mean."""
    found = capture.capture(inputs, [layer])
    w = found.weights[layer]
    grid = _grid(capture, found.weights, inputs)
    _check_token(token, grid)
    heads = np.stack([rec.head_maps(item, grid, token) for item in w])
    return AttentionMaps(heads.mean(axis=1), heads, grid, "heads", layer, token)


def overview(capture: AttentionCapture, inputs: Any, token: int | None = None) -> tuple[list[str], np.ndarray, Any]:
    """``(layers, maps, grid)``: ``maps`` is ``(layers, heads, grid_h, grid_w)`` for batch item 0.

    Layers with another head count or token count than the first are left out.
    """
    found = capture.capture(inputs)
    grid = _grid(capture, found.weights, inputs)
    _check_token(token, grid)
    first = next(iter(found.weights.values()))[0]
    paths, rows = [], []
    for path, w in found.weights.items():
        if w[0].shape == first.shape:
            paths.append(path)
            rows.append(rec.head_maps(w[0], grid, token))
    return paths, np.stack(rows), grid


def rollout_maps(
    capture: AttentionCapture, inputs: Any, *, fusion: str = "mean", discard: float = 0.0, token: int | None = None
) -> AttentionMaps:
    """Attention rollout through every attention layer (Abnar & Zuidema), per batch item."""
    found = capture.capture(inputs)
    grid = _grid(capture, found.weights, inputs)
    _check_token(token, grid)
    layers = _same_tokens(found.weights)
    maps = np.stack([
        rec.row_to_grid(rec.rollout_row([found.weights[p][i] for p in layers], fusion, discard, token, grid.extra), grid)
        for i in range(len(found.weights[layers[0]]))
    ])
    return AttentionMaps(maps, None, grid, "rollout", layers[-1], token)


def attribution_maps(
    capture: AttentionCapture, inputs: Any, *, class_index: int | None = None, output: str | None = None,
    output_keys: list[str] | None = None, token: int | None = None,
) -> AttentionMaps:
    """Gradient-weighted rollout / transformer attribution (Chefer et al.) for a class, per item."""
    g = attention_gradients(capture, inputs, class_index=class_index, output=output, output_keys=output_keys)
    grid = _grid(capture, g.weights, inputs)
    _check_token(token, grid)
    layers = _same_tokens(g.weights)
    maps = np.stack([
        rec.token_row(rec.gradient_rollout([g.weights[p][i] for p in layers], [g.grads[p][i] for p in layers]), grid, token)
        for i in range(len(g.classes))
    ])
    return AttentionMaps(maps, None, grid, "attribution", layers[-1], token, g.classes, g.scores, g.output)


def _same_tokens(weights: dict[str, np.ndarray]) -> list[str]:
    """The layers whose attention is over the first layer's tokens (self-attention of one sequence)."""
    first = next(iter(weights.values()))
    n = first.shape[-1]
    layers = [p for p, w in weights.items() if w.shape[-1] == n and w.shape[-2] == n]
    if not layers:
        raise ProbeError("Rollout needs self-attention layers (queries and keys of the same tokens).")
    return layers
