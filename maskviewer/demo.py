"""The bundled demos: which model, which inputs, what each one shows and how well it scores.

``resources/demo/demos.json`` is written by ``scripts/build_demos.py``; this module reads it
(the standard library and :mod:`maskviewer.core` only: no Qt, and nothing from :mod:`maskviewer.gui`, which depends on
this module and not the other way round). Opening a demo in the window is
:func:`maskviewer.gui.demo_gallery.open_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.schema import parse_json

#: How each score's metric is named in the gallery, and whether higher is better.
METRICS = {
    "accuracy": ("accuracy", True),
    "mae": ("mean absolute error", False),
    "dice": ("Dice", True),
}


def resources_dir() -> Path:
    """The folder with the bundled resources.

    Installed, it is the package ``maskviewer.resources``; run from a source checkout, it is
    ``resources/`` beside the ``maskviewer`` folder.
    """
    try:
        return Path(str(resources.files("maskviewer.resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "resources"


def demo_dir() -> Path:
    """The folder holding ``demos.json`` and the demo files."""
    return resources_dir() / "demo"


@dataclass
class Demo:
    """One bundled demo, as described in ``demos.json``.

    Attributes
    ----------
    name : str
        Short name (``maskviewer --demo NAME``).
    title : str
        One line for the gallery.
    model : str
        The ``.keras`` file, relative to the demo folder (as are all file names here).
    images : list of str
        Sample images; the first is opened with the demo.
    description : str
        The paragraph shown in the gallery, with the held-out score.
    labels : str or None
        Class labels file.
    score : dict
        ``metric`` (accuracy, mae or dice), ``value``, ``n`` (held-out samples) and the files
        and extra figures the build script recorded.
    view : str
        Title of the dock the demo is about (``"Layers"``, ``"Masks"``, ``"Patches"`` …).
    masks : list of str
        Per image, a mask file: painted into the Masks panel (view ``"Masks"``) or used as the
        reference mask (view ``"Binarise"``).
    inputs : dict
        Other model inputs fed from files: input name -> file.
    focus : dict
        What the view should show first (a layer, an output, a patch preset).
    """

    name: str
    title: str
    model: str
    images: list[str]
    description: str
    labels: str | None = None
    score: dict = field(default_factory=dict)
    view: str = "Predictions"
    masks: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    focus: dict[str, Any] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    build_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return demo_dir()

    def path(self, relative: str) -> Path:
        """A demo file's absolute path."""
        return self.folder / relative

    def score_text(self) -> str:
        """The held-out score in a few words, e.g. ``"held-out accuracy 96.7% (449 samples)"``."""
        metric = self.score.get("metric")
        value = self.score.get("value")
        if metric is None or value is None:
            return "no held-out score recorded"
        label = METRICS.get(metric, (metric, True))[0]
        shown = f"{value:.1%}" if metric == "accuracy" else f"{value:.3g}"
        n = self.score.get("n")
        return f"held-out {label} {shown}" + (f" ({n} samples)" if n else "")

    def missing_files(self) -> list[str]:
        """Files the demo names that are not there (an incomplete install or build)."""
        names = [self.model, *self.images, *self.masks, *self.inputs.values()]
        if self.labels:
            names.append(self.labels)
        return [n for n in names if not self.path(n).exists()]


_FIELDS = {f.name for f in fields(Demo)}


def _demo_from_entry(entry: dict) -> Demo:
    known = {k: v for k, v in entry.items() if k in _FIELDS and k != "extra"}
    extra = {k: v for k, v in entry.items() if k not in _FIELDS}
    return Demo(**known, extra=extra)


def _index_schema() -> Any:
    """The shape ``demos.json`` must have (checked, so a damaged index is one message)."""
    from maskviewer.core.schema import Json, List, Map, Num, Obj, Optional, Str

    names = List(Str(), 10_000, what="a list of file names")
    demo = Obj(
        {"name": Str(200), "title": Str(), "model": Str(), "images": names, "description": Str(100_000)},
        {"labels": Optional(Str()), "score": Json(max_depth=4), "view": Str(200), "masks": names,
         "inputs": Map(Str(), 64), "focus": Json(max_depth=4), "samples": names,
         "build_seconds": Optional(Num(0, 1e9))},
    )
    return Obj({"demos": List(demo, 1000, what="a list of demos")})


def list_demos() -> list[Demo]:
    """The demos described in ``resources/demo/demos.json`` (empty if there is none)."""
    index = demo_dir() / "demos.json"
    if not index.exists():
        return []
    try:
        data = parse_json(index.read_bytes())
        _index_schema().check(data)  # fields of the right types; extras are kept as they are
        return [_demo_from_entry(entry) for entry in data["demos"]]
    except (ValueError, KeyError, TypeError) as exc:  # SchemaError is a ValueError
        raise MaskviewerError(
            f"{index} is not a valid demo index ({exc}). Rebuild it with "
            "scripts/build_demos.py or reinstall maskviewer."
        ) from exc


def get_demo(name: str | None) -> Demo:
    """The demo called ``name`` (the first one for ``None`` or ``""``).

    Raises
    ------
    MaskviewerError
        No demos are installed, or none has that name (the message lists them).
    """
    demos = list_demos()
    if not demos:
        raise MaskviewerError("No demos are installed (resources/demo/demos.json is missing).")
    if not name:
        return demos[0]
    for demo in demos:
        if demo.name == name:
            return demo
    raise MaskviewerError(
        f"No demo called {name!r}. Available: {', '.join(d.name for d in demos)}."
    )
