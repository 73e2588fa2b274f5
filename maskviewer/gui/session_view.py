"""The tools' view settings a session keeps: read from the tools, and put back.

Layer, method, colours, mask opacity, patch spec, threshold: courtesies, so a setting a tool
no longer accepts is skipped rather than failing the whole restore. Imports no Qt: it goes
through the tools' own attributes and panels (``window.tools``).
"""

from __future__ import annotations

import contextlib
from typing import Any


def view_settings(tools: dict[str, Any]) -> dict:
    """The tools' settings worth restoring, as plain JSON-able data."""
    view: dict[str, Any] = {}
    layers = tools.get("layers")
    if layers is not None:
        p = layers.panel
        view["layers"] = {
            "layer": p.current_path(), "method": p.current_method(), "k": p.k.value(),
            "channel": p.channel.value(), "colormap": p.colormap.currentData(),
            "normalisation": p.normalisation.currentData(), "opacity": p.opacity.value(),
            "class_index": p.class_index.value(), "output": p.output.currentData(),
        }
    masks = tools.get("masks")
    if masks is not None:
        view["masks"] = {"opacity": masks.opacity, "outline": masks.outline, "tool": masks.tool}
    patches = tools.get("patches")
    if patches is not None:
        sp = patches.spec
        view["patches"] = {"size": list(sp.size), "stride": list(sp.stride), "rate": list(sp.rate),
                           "padding": sp.padding}
    binarise = tools.get("binarise")
    if binarise is not None:
        view["binarise"] = {"threshold": float(binarise.threshold), "source": binarise.current}
    return view


def apply_view(tools: dict[str, Any], view: dict) -> bool:
    """Put back what can be set now; True when the layer choice must wait for the layer list."""
    _apply_masks(tools.get("masks"), view.get("masks") or {})
    lv = view.get("layers") or {}
    _apply_layer_look(tools.get("layers"), lv)
    _apply_patches(tools.get("patches"), view.get("patches"))
    _apply_binarise(tools.get("binarise"), view.get("binarise"))
    return bool(lv)


def apply_layer_choice(layers: Any, lv: dict) -> None:
    """Choose the saved layer, channel and method once the model's layer list has arrived."""
    with contextlib.suppress(Exception):
        if lv.get("layer") in layers.entries:
            layers.select_layer(lv["layer"])
        p = layers.panel
        p.channel.setValue(int(lv.get("channel", 0)))
        if lv.get("method"):
            p.set_method(lv["method"])
        layers.request()


def _apply_masks(masks: Any, mv: dict) -> None:
    with contextlib.suppress(Exception):  # settings are a courtesy: a bad one is skipped
        if masks is not None and "opacity" in mv:
            masks.panel.opacity.setValue(int(round(float(mv["opacity"]) * 100)))
            masks.panel.outline.setChecked(bool(mv.get("outline", False)))


def _apply_layer_look(layers: Any, lv: dict) -> None:
    if layers is None or not lv:
        return
    p = layers.panel
    with contextlib.suppress(Exception):
        for combo, key in ((p.colormap, "colormap"), (p.normalisation, "normalisation")):
            i = combo.findData(lv.get(key))
            if i >= 0:
                combo.setCurrentIndex(i)
        p.opacity.setValue(int(lv.get("opacity", p.opacity.value())))
        p.k.setValue(int(lv.get("k", p.k.value())))


def _apply_patches(patches: Any, pv: dict | None) -> None:
    if patches is None or not pv:
        return
    from maskviewer.core.patches import PatchSpec

    with contextlib.suppress(Exception):
        patches.set_spec(PatchSpec(tuple(pv["size"]), tuple(pv["stride"]), tuple(pv["rate"]), pv["padding"]))


def _apply_binarise(binarise: Any, bv: dict | None) -> None:
    if binarise is not None and bv and bv.get("threshold") is not None:
        with contextlib.suppress(Exception):
            binarise.set_threshold(float(bv["threshold"]))
