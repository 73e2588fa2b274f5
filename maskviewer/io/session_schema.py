"""The expected shape of ``session.json`` (sessions and autosaves) and of saved input mappings.

Checked with :mod:`maskviewer.core.schema` right after parsing, so the reader below works on
values of the right types and ranges only. Limits are generous for real work and small enough
that a crafted file cannot make the app allocate much or loop long.
"""

from __future__ import annotations

from maskviewer.core.mapping import RESIZE_MODES, SCALE_MODES
from maskviewer.core.schema import (
    AnyOf,
    Bool,
    Int,
    Json,
    List,
    Map,
    Num,
    Obj,
    Optional,
    SchemaError,
    Str,
)

#: the most input mappings, images, masks per image, labels and custom-code files a session holds
MAX_INPUTS = 256
MAX_IMAGES = 10_000
MAX_MASKS = 1_000
MAX_LABELS = 100_000
MAX_CUSTOM_FILES = 100
#: image sides as images.MAX_SIDE (kept here so io.session need not import the image decoders)
MAX_SIDE = 65_535
#: a process id as the system gives it (pid_t)
MAX_PID = 2**31 - 1

PATH = Str(max_len=32_768)
REF = AnyOf(PATH, Obj({"path": PATH}, {"relative": Optional(PATH)}), what="a path or {path, relative}")
STATS = List(Num(-1e9, 1e9), max_len=64, min_len=1, what="a list of numbers")

MAPPING = Obj(
    {},
    {
        "source": Str(max_len=32_768),
        "resize": Str(choices=RESIZE_MODES),
        "scale": Str(choices=SCALE_MODES),
        "mean": STATS,
        "std": STATS,
    },
    what="a mapping object (source, resize, scale, mean, std)",
)
MAPPINGS = Map(MAPPING, MAX_INPUTS, what="an object of input name → mapping")

MASK = Obj(
    {"name": Str(max_len=1024), "file": Str(max_len=1024)},
    {"color": List(Int(0, 255), max_len=4, min_len=3, what="a list of 3 colour values 0..255"),
     "visible": Bool()},
)
IMAGE = Obj(
    {"path": PATH, "height": Int(1, MAX_SIDE), "width": Int(1, MAX_SIDE)},
    {"relative": Optional(PATH), "active": Optional(Str(max_len=1024)),
     "masks": Optional(List(MASK, MAX_MASKS, what="a list of masks"))},
)
MODEL = Obj({"path": PATH}, {"relative": Optional(PATH), "sha256": Optional(Str(max_len=128))})
AUTOSAVE = Obj(
    {"pid": Int(0, MAX_PID)},
    {"clean": Bool(), "time": Num(0, 1e13)},
    what="an object with the writing process's pid",
)

SESSION = Obj(
    {"format": Str(max_len=64), "version": Int(0, 2**31)},
    {
        "tool_version": Optional(Str(max_len=64)),
        "saved": Optional(Str(max_len=64)),
        "image": Optional(REF),
        "images": Optional(List(IMAGE, MAX_IMAGES, what="a list of images")),
        "model": Optional(MODEL),
        "custom_objects": Optional(List(Optional(REF), MAX_CUSTOM_FILES, what="a list of paths")),
        "mappings": Optional(MAPPINGS),
        "labels": Optional(List(Str(max_len=4096), MAX_LABELS, what="a list of class names")),
        "view": Optional(Json(max_depth=8, max_nodes=200_000)),
        "autosave": Optional(AUTOSAVE),
    },
    what="an object (a maskviewer session)",
)

__all__ = ["AUTOSAVE", "MAPPINGS", "SESSION", "SchemaError"]
