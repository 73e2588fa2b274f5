"""The mask ablation, without Qt: the model run with the painted mask and with stand-ins for it
(no mask, all ones, a random and the inverted mask), in one job on the inference thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mask_feed import (
    ABLATION_LABELS,
    AblationRow,
    ablation_masks,
    ablation_rows,
    masks_needed,
)

ABLATION_KIND = "mask-ablation"
ABLATION_SEED = 0
RUNNING_TEXT = "Running the model with each mask variant…"

#: the builds of each variant's inputs: ``variant -> build()`` returning ``(arrays, frames)``
Builds = dict[str, Callable[[], tuple[dict, dict]]]


def prepare_ablation(model: Any, build_inputs: Callable[..., Callable]) -> Builds:
    """Build the inputs of every mask variant now, on the GUI thread.

    Parameters
    ----------
    model
        The :class:`~maskviewer.gui.masks.model.MasksModel` (its state, masks and feed).
    build_inputs
        The controller's ``build_inputs(masks=...)``.

    Raises
    ------
    MaskviewerError
        With a message for the user when there is nothing to compare.
    """
    state = model.state
    feed = model.feeding.feed()
    if state.model_info is None or state.image is None or model.maskset is None:
        raise MaskviewerError("Open an image and a model first.")
    if feed.mode == "none":
        raise MaskviewerError(
            "The mask is not fed to the model, so there is nothing to compare. Choose how "
            "it is fed in the Masks panel (Mask → model)."
        )
    mask = model.maskset.get(feed.mask_name or "")
    if mask is None:
        raise MaskviewerError(f"This image has no mask {feed.mask_name!r}.")
    others = model.provide_masks(masks_needed(state.mappings))
    variants = ablation_masks(mask.data, ABLATION_SEED)
    return {v: build_inputs(masks={**others, mask.name: arr}) for v, arr in variants.items()}


def ablation_job(builds: Builds) -> Callable[[Any], dict[str, dict[str, np.ndarray]]]:
    """The job: one prediction per variant, reporting progress after each."""

    def job(ctx: Any) -> dict[str, dict[str, np.ndarray]]:
        results = {}
        for i, (variant, build) in enumerate(builds.items()):
            arrays, _frames = build()
            ctx.check()
            outputs = ctx.host.predict(arrays)
            results[variant] = {k: v[0] for k, v in outputs.items()}
            ctx.progress(i + 1, len(builds))
        return results

    return job


def summarise(
    result: dict[str, dict[str, np.ndarray]], labels: list[str] | None
) -> tuple[list[AblationRow], str]:
    """The table rows and the text above them (with each class output's top class per variant)."""
    rows = ablation_rows(result, labels)
    parts = []
    for out_name, ref in result["painted"].items():
        if np.asarray(ref).ndim <= 1 and np.asarray(ref).size > 1:
            tops = []
            for v, outs in result.items():
                i = int(np.argmax(outs[out_name]))
                label = labels[i] if labels and i < len(labels) else str(i)
                tops.append(f"{ABLATION_LABELS[v]}: {label}")
            parts.append(f"{out_name} top class — " + ", ".join(tops))
    summary = (
        f"Model run with {len(result)} masks (random: seed {ABLATION_SEED}, same coverage as "
        "the painted mask). Δ is the difference to the painted mask."
    )
    if parts:
        summary += "\n" + "\n".join(parts)
    return rows, summary
