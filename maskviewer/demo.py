"""The bundled demos: which model, which inputs, and what each one shows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from maskviewer.core.errors import MaskviewerError


def resources_dir() -> Path:
    """The folder with the bundled resources.

    Installed, it is the package ``maskviewer.resources``; run from a source checkout, it is
    ``resources/`` beside the ``maskviewer`` folder.
    """
    try:
        return Path(str(resources.files("maskviewer.resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "resources"


@dataclass
class Demo:
    name: str
    title: str
    model: str
    images: list[str]
    description: str
    labels: str | None = None
    score: dict = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return resources_dir() / "demo"

    def path(self, relative: str) -> Path:
        return self.folder / relative


def list_demos() -> list[Demo]:
    """The demos described in ``resources/demo/demos.json``."""
    index = resources_dir() / "demo" / "demos.json"
    if not index.exists():
        return []
    data = json.loads(index.read_text(encoding="utf-8"))
    return [Demo(**entry) for entry in data["demos"]]


def get_demo(name: str | None) -> Demo:
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


def open_demo(window, name: str | None) -> Demo:
    """Open a demo's first image, labels and model in ``window``."""
    demo = get_demo(name)
    controller = window.controller
    controller.open_image(str(demo.path(demo.images[0])))
    if demo.labels:
        controller.load_labels(str(demo.path(demo.labels)))
    controller.open_model(str(demo.path(demo.model)))
    window.statusBar().showMessage(f"Demo: {demo.title}", 10000)
    return demo
