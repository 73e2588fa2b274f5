"""The window's choices as a data set run's options (Qt-free: it reads the state and the tools'
models): the input mapping when the user changed it from the proposal, how the mask is fed,
the Patches tool's grid, the Binarise tool's threshold and output, the labels and output kinds.

The run builds its plan with ``maskviewer evaluate``'s own parser and
:func:`~maskviewer.cli.export_plan.make_plan`, so the window and the command line score a data
set alike; each image gets the mapping the window would propose when it is opened, with the
user's changes applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maskviewer.core.dataset import DatasetIndex
from maskviewer.core.mapping import is_image_input, propose_mapping, scale_text
from maskviewer.core.mask_feed import current_feed
from maskviewer.gui.dataset.jobs import RunRequest, window_argv


def chosen_mapping(state: Any) -> tuple[str | None, str | None]:
    """``(resize, scale)`` of the first image input where the user changed them from what the
    window proposes for the current image (None: each image gets its own proposal)."""
    info = state.model_info
    for spec in info.inputs:
        m = state.mappings.get(spec.name)
        if m is None or not is_image_input(spec.shape):
            continue
        proposed = propose_mapping(spec.shape, state.image, info.expects_0_255, info.preprocessing.get(spec.name))
        resize = m.resize if m.resize != proposed.resize and m.resize != "none" else None
        same_scale = (m.scale, m.mean, m.std) == (proposed.scale, proposed.mean, proposed.std)
        scale = None if same_scale or m.scale == "raw" else scale_text(m)
        return resize, scale
    return None, None


def _map_outputs(info: Any) -> list[str]:
    from maskviewer.core.predictions import output_kind

    return [t.name for t in info.outputs if output_kind(tuple(t.shape[1:])) == "image"]


def build_request(state: Any, tools: dict, index: DatasetIndex, table: Path, ablation: bool,
                  patches: bool) -> RunRequest | str:
    """The run's request, or why there is none (a sentence for the page)."""
    info = state.model_info
    if info is None:
        return "Open a model first (Model → Open Model… or a demo); then press Run."
    feed = current_feed(state.mappings)
    has_masks = any(e.mask is not None for e in index.entries)
    if feed.mode != "none" and not has_masks:
        return ("The model is fed a mask (Masks page), but this data set has none: put one per image in a "
                "masks/ folder beside the images (same file names) or a mask column in the list.")
    if ablation and feed.mode == "none":
        return "The mask ablation replaces the mask fed to the model: feed the mask first (Masks page)."
    if ablation and not has_masks:
        return "The mask ablation needs a mask per image; this data set has none."
    resize, scale = chosen_mapping(state)
    spec = getattr(getattr(tools.get("patches"), "model", None), "spec", None) if patches else None
    if patches and spec is None:
        return "The patch rules need the Patches tool."
    threshold, invert, map_output = None, False, None
    maps = _map_outputs(info)
    if maps and any(e.reference is not None for e in index.entries):
        binarise = getattr(tools.get("binarise"), "model", None)
        threshold = float(getattr(binarise, "threshold", 0.5))
        invert = bool(getattr(binarise, "invert", False))
        current = getattr(binarise, "current", None)
        map_output = current if current in maps else maps[0]
    argv = window_argv(resize, scale, feed.label if feed.mode != "none" else None, spec, threshold, invert)
    return RunRequest(info, index, table, argv, labels=state.labels, map_output=map_output,
                      ablation=ablation, kinds=state.kinds.chosen())
