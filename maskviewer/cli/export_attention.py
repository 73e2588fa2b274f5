"""Vision transformers in ``maskviewer export``: ``--attention``, ``--cam rollout|attribution``,
``--grid`` and ``--extra-tokens``.

* ``--attention LAYER`` (repeatable): per-head maps of a MultiHeadAttention layer — where the
  class token (or, without one, the mean token) attends — and their mean;
* ``--cam rollout`` (Abnar & Zuidema, ``--head-fusion``, ``--discard``) and ``--cam attribution``
  (gradient-weighted rollout, Chefer et al.; ``--class``, ``--output``) through every attention layer;
* ``--grid HxW`` and ``--extra-tokens K`` override the token grid found from the model (they apply
  to token layers given with ``--layer`` too).

Every entry says the grid, the tokens dropped and (per-head maps) the head. The maps are made
per image after the batch pass (one capture pass each), like patch maps.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from maskviewer.cli.args import UsageError
from maskviewer.core.errors import MaskviewerError

#: ``--cam`` methods that go through the attention layers
TOKEN_CAMS = ("rollout", "attribution")


def add_attention_options(g: Any) -> None:
    """The transformer options, in the "layers and CAMs" group."""
    g.add_argument("--attention", action="append", default=[], metavar="LAYER",
                   help="per-head attention maps (and their mean) of a MultiHeadAttention layer, for the "
                        "class token (repeatable); `maskviewer info` lists the layers")
    g.add_argument("--grid", metavar="HxW", help="token grid of transformer layers (default: from the model's patch size, or the token count)")
    g.add_argument("--extra-tokens", type=int, metavar="K", help="leading class/register tokens to leave out (default: found)")
    g.add_argument("--head-fusion", choices=("mean", "max", "min"), default="mean", help="--cam rollout: how heads are fused (default mean)")
    g.add_argument("--discard", type=float, default=0.0, metavar="F", help="--cam rollout: fraction of the lowest attention weights discarded (default 0)")


@dataclass
class AttentionPlan:
    """What the transformer options ask for, checked against the model."""

    layers: list[str] = field(default_factory=list)
    cam: str | None = None
    fusion: str = "mean"
    discard: float = 0.0
    override: Any = None  # TokenOverride

    @property
    def empty(self) -> bool:
        return not self.layers and self.cam is None

    def names(self) -> list[str]:
        """The names its artifacts carry (for the plan's unique file names)."""
        return [*self.layers, *([self.cam] if self.cam else [])]

    def settings(self) -> dict:
        return {
            "attention": self.layers, "token_cam": self.cam,
            "head_fusion": self.fusion if self.cam == "rollout" else None,
            "discard": self.discard if self.cam == "rollout" else None,
            "grid": list(self.override.grid) if self.override and self.override.grid else None,
            "extra_tokens": self.override.extra if self.override else None,
        }


def token_cam(args: argparse.Namespace) -> str | None:
    return args.cam if getattr(args, "cam", None) in TOKEN_CAMS else None


def plan_attention(args: argparse.Namespace, host: Any) -> AttentionPlan | None:
    """Check the transformer options and set the token grid override on the model's probe.

    Returns None when no transformer option is given.
    """
    from maskviewer.core.tokens import TokenGridError, TokenOverride, parse_grid

    grid_text = getattr(args, "grid", None)
    extra = getattr(args, "extra_tokens", None)
    layers = list(dict.fromkeys(getattr(args, "attention", []) or []))
    cam = token_cam(args)
    if not (layers or cam or grid_text or extra is not None):
        return None
    if not 0.0 <= args.discard < 1.0:
        raise UsageError(f"--discard {args.discard}: give a fraction from 0 up to (not including) 1.")
    try:
        override = TokenOverride(parse_grid(grid_text) if grid_text else None, extra)
    except TokenGridError as exc:
        raise UsageError(f"--grid/--extra-tokens: {exc}") from None
    if not host.info.probe_supported:
        raise UsageError(host.info.note or "This model's layers cannot be probed.")
    from maskviewer.inference.probe import get_probe

    probe = get_probe(host)
    probe.tokens.override = None if override.empty else override
    plan = AttentionPlan(layers, cam, args.head_fusion, float(args.discard), probe.tokens.override)
    for path in getattr(args, "layer", []) or []:  # the override must fit the token layers asked for
        try:
            probe.token_grid(path)
        except TokenGridError as exc:
            raise UsageError(f"--layer {path}: {exc}") from None
        except MaskviewerError:
            pass  # an unknown layer: the layer check says which exist
    if layers or cam:
        from maskviewer.inference.attention import AttentionCapture

        known = AttentionCapture(probe).paths()
        if not known:
            what = "--attention" if layers else f"--cam {cam}"
            raise UsageError(f"{what}: the model has no MultiHeadAttention layer, so there is no attention to export.")
        bad = [p for p in layers if p not in known]
        if bad:
            raise UsageError(f"--attention {bad[0]}: not a MultiHeadAttention layer; the model's are {', '.join(known)}.")
    return plan


class AttentionExport:
    """The attention maps of one image at a time (one capture pass each)."""

    def __init__(self, host: Any, plan: AttentionPlan) -> None:
        from maskviewer.inference.attention import AttentionCapture
        from maskviewer.inference.probe import get_probe

        self.host, self.plan = host, plan
        self.capture = AttentionCapture(get_probe(host))

    def items(self, item: Any, output: str | None, class_index: int | None) -> list:
        """Export items of one prepared image: per-head maps and means, rollout or attribution."""
        import numpy as np

        from maskviewer.inference import attention_maps as am
        from maskviewer.io.export import ExportItem

        arrays = {k: v[None] for k, v in item.arrays.items()}
        packed = self.host.pack_inputs(arrays)
        frame = next(iter(item.frames.values()))
        out = []
        for layer in self.plan.layers:
            res = am.head_maps(self.capture, packed, layer)
            base = {**res.grid.manifest(), "query": _query(res.grid)}
            for h, m in enumerate(res.heads[0]):
                out.append(ExportItem("attention", layer, m, frame, f"head{h}", image=item.path,
                                      info={**base, "head": h}, caption=f"{layer} · head {h}"))
            out.append(ExportItem("attention", layer, res.maps[0], frame, "heads_mean", image=item.path,
                                  info={**base, "head": "mean"}, caption=f"{layer} · mean of {len(res.heads[0])} heads"))
        if self.plan.cam == "rollout":
            res = am.rollout_maps(self.capture, packed, fusion=self.plan.fusion, discard=self.plan.discard)
            info = {**res.grid.manifest(), "query": _query(res.grid), "head_fusion": self.plan.fusion,
                    "discard": self.plan.discard, "head": self.plan.fusion}
            out.append(ExportItem("cam", "rollout", res.maps[0], frame, "rollout", image=item.path,
                                  vrange=(0.0, float(np.max(res.maps[0])) or 1.0), info=info,
                                  caption=f"attention rollout (heads: {self.plan.fusion})"))
        elif self.plan.cam == "attribution":
            res = am.attribution_maps(self.capture, packed, class_index=class_index, output=output,
                                      output_keys=list(self.host.loaded.output_keys))
            info = {**res.grid.manifest(), "query": _query(res.grid), "output": res.output,
                    "score": float(res.scores[0]), "head": "gradient-weighted mean"}
            c = int(res.classes[0])
            out.append(ExportItem("cam", "attribution", res.maps[0], frame, "attribution", c, item.path,
                                  vrange=(0.0, float(np.max(res.maps[0])) or 1.0), info=info,
                                  caption=f"attribution class {c}"))
        return out


def _query(grid: Any) -> str:
    return "class token" if grid.extra else "mean of all tokens (no class token)"


def annotate_tokens(exports: list, maps: dict) -> None:
    """Token layers' activation entries say their grid and the tokens dropped."""
    for e in exports:
        lm = maps.get(e.name)
        grid = getattr(lm, "tokens", None)
        if e.kind in ("activation", "attention") and grid is not None:
            e.info.update(grid.manifest())
