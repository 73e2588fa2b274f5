"""Token layers of vision transformers as maps: which grid an ``(N, C)`` token sequence lies on.

A ViT turns the image into a ``grid_h × grid_w`` grid of patches, one token each, and often puts
``k`` extra tokens in front (a class token, register or distillation tokens). A layer output of
shape ``(B, N, C)`` with ``N = grid_h * grid_w + k`` is a map once the ``k`` leading tokens are
dropped and the rest reshaped row-major to ``(grid_h, grid_w, C)`` — the order in which
``Conv2D`` patch embeddings (then ``Reshape``) and ``extract_patches`` lay patches out.

The grid is found, in this order, from the user's override, from the model (its input size
divided by its patch size: see :mod:`maskviewer.inference.probe_tokens`), or from ``N`` alone:
the first ``k`` (0, 1, 2, …) for which ``N - k`` factorises as the image's aspect (square for a
square image). Numpy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: the most leading extra tokens looked for when the grid is found from N alone
MAX_EXTRA_TOKENS = 8


class TokenGridError(ValueError):
    """A grid or an extra-token count that does not fit a layer's token count."""


@dataclass(frozen=True)
class TokenGrid:
    """Where a layer's tokens lie: ``extra`` leading tokens, then a row-major grid.

    Attributes
    ----------
    grid_h, grid_w : int
        The patch grid.
    extra : int
        Leading tokens that are not patches (class, register, distillation tokens).
    source : str
        How it was found: ``"user"``, ``"model"`` (input size ÷ patch size) or ``"tokens"``
        (factorising the token count).
    """

    grid_h: int
    grid_w: int
    extra: int = 0
    source: str = "tokens"

    @property
    def n_tokens(self) -> int:
        return self.grid_h * self.grid_w + self.extra

    @property
    def grid(self) -> tuple[int, int]:
        return (self.grid_h, self.grid_w)

    def describe(self) -> str:
        """``"14×14 token grid, 1 extra token left out"``."""
        text = f"{self.grid_h}×{self.grid_w} token grid"
        if self.extra:
            text += f", {self.extra} extra token{'s' if self.extra != 1 else ''} left out"
        return text

    def manifest(self) -> dict:
        """What an export manifest records about the grid."""
        return {"grid": [self.grid_h, self.grid_w], "tokens_dropped": self.extra, "grid_source": self.source}


@dataclass(frozen=True)
class TokenOverride:
    """The user's grid and/or extra-token count (None: found as usual)."""

    grid: tuple[int, int] | None = None
    extra: int | None = None

    def __post_init__(self) -> None:
        if self.extra is not None and self.extra < 0:
            raise TokenGridError(f"The number of extra tokens must be 0 or more, not {self.extra}.")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise TokenGridError(f"A token grid needs two sizes of at least 1, not {self.grid}.")

    @property
    def empty(self) -> bool:
        return self.grid is None and self.extra is None


def parse_grid(text: str) -> tuple[int, int]:
    """``"14x14"`` (or ``14×14``, ``14,14``) -> ``(14, 14)``; :class:`TokenGridError` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×X,]\s*(\d+)\s*", text or "")
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise TokenGridError(f"A token grid is written HxW with positive sizes, e.g. 14x14; not {text!r}.")
    return int(m.group(1)), int(m.group(2))


def factor_grid(m: int, aspect: float = 1.0) -> tuple[int, int] | None:
    """The ``(h, w)`` with ``h * w == m`` whose ratio ``w / h`` is exactly ``aspect`` (None if none).

    A square image needs a perfect square; ``aspect`` is the image's width over its height.
    """
    if m < 1:
        return None
    for h in range(1, m + 1):
        if m % h:
            continue
        w = m // h
        if abs(w / h - aspect) < 1e-6:
            return h, w
    return None


def detect_grid(
    n_tokens: int,
    *,
    model_grid: tuple[int, int] | None = None,
    image_hw: tuple[int, int] | None = None,
    override: TokenOverride | None = None,
    max_extra: int = MAX_EXTRA_TOKENS,
) -> TokenGrid | None:
    """The grid of a layer with ``n_tokens`` tokens, or None when it is not a token layer.

    Parameters
    ----------
    n_tokens : int
        ``N`` of the layer's ``(B, N, C)`` output.
    model_grid : (int, int), optional
        The model's patch grid (input size ÷ patch size), when the model tells it.
    image_hw : (int, int), optional
        The image input's height and width (its aspect picks among factorisations).
    override : TokenOverride, optional
        The user's grid and/or extra-token count; they must fit ``n_tokens``.
    max_extra : int
        The most leading tokens considered when the grid is found from ``n_tokens``.

    Raises
    ------
    TokenGridError
        An override that does not fit ``n_tokens``.
    """
    n = int(n_tokens)
    aspect = image_hw[1] / image_hw[0] if image_hw and min(image_hw) > 0 else 1.0
    if override is not None and not override.empty:
        return _user_grid(n, override, model_grid, aspect)
    if model_grid is not None:
        extra = n - model_grid[0] * model_grid[1]
        if 0 <= extra <= max_extra:
            return TokenGrid(model_grid[0], model_grid[1], extra, "model")
    for extra in range(0, min(max_extra, n - 4) + 1):
        found = factor_grid(n - extra, aspect)
        if found is not None and min(found) >= 2:
            return TokenGrid(found[0], found[1], extra, "tokens")
    return None


def _user_grid(n: int, o: TokenOverride, model_grid: tuple[int, int] | None, aspect: float) -> TokenGrid:
    if o.grid is not None:
        h, w = o.grid
        extra = n - h * w if o.extra is None else o.extra
        if extra < 0 or h * w + extra != n:
            raise TokenGridError(
                f"A {h}×{w} grid{f' with {o.extra} extra tokens' if o.extra is not None else ''} "
                f"does not fit a layer of {n} tokens ({h * w} + {max(extra, 0)} ≠ {n})."
            )
        return TokenGrid(h, w, extra, "user")
    extra = int(o.extra or 0)
    if model_grid is not None and model_grid[0] * model_grid[1] + extra == n:
        return TokenGrid(model_grid[0], model_grid[1], extra, "user")
    found = factor_grid(n - extra, aspect) or factor_grid(n - extra, 1.0)
    if found is None:
        raise TokenGridError(
            f"{n} tokens less {extra} extra leave {n - extra}, which is no grid of the image's "
            "shape; give the grid too (HxW)."
        )
    return TokenGrid(found[0], found[1], extra, "user")


def tokens_to_grid(x: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """``(..., N, C)`` tokens -> ``(..., grid_h, grid_w, C)``: the extra tokens dropped."""
    x = np.asarray(x)
    if x.shape[-2] != grid.n_tokens:
        raise TokenGridError(f"The layer has {x.shape[-2]} tokens, the grid needs {grid.n_tokens}.")
    return x[..., grid.extra:, :].reshape(*x.shape[:-2], grid.grid_h, grid.grid_w, x.shape[-1])


def patch_of_pixel(row: float, col: float, image_hw: tuple[int, int], grid: TokenGrid) -> int:
    """The token index (extra tokens counted) of the patch that covers image pixel ``(row, col)``."""
    h, w = image_hw
    r = min(max(int(row * grid.grid_h / h), 0), grid.grid_h - 1)
    c = min(max(int(col * grid.grid_w / w), 0), grid.grid_w - 1)
    return grid.extra + r * grid.grid_w + c
