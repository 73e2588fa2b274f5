"""How long each bundled demo takes to open: the model alone, and in the window.

    python benchmarks/bench_demos.py

1. ``ModelHost.load`` (read, describe, warm up) and one prediction on the demo's first sample,
   on this thread: the floor.
2. The same demo opened in the real window (offscreen) through the gallery's ``open``, until
   the first prediction is shown: what a user waits for after picking a demo.

The ratio (2) / (1) is the cost of the app around the model (image loading, mappings, the
views reacting to the new model). Figures are noisy on a shared machine; compare the ratio.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def model_alone(demo) -> tuple[float, float]:
    """Seconds to load the demo's model and to run it once on its sample inputs."""
    from maskviewer.core.mapping import prepare_input, propose_mapping
    from maskviewer.inference.runner import ModelHost
    from maskviewer.io.images import load_image

    t0 = time.perf_counter()
    host = ModelHost()
    info = host.load(demo.path(demo.model))
    t_load = time.perf_counter() - t0
    arrays = {}
    for spec in info.inputs:
        rel = demo.inputs.get(spec.name, demo.samples[0] if demo.samples else demo.images[0])
        image = load_image(demo.path(rel))
        x, _ = prepare_input(image, propose_mapping(spec.shape, image), spec.shape)
        arrays[spec.name] = x[None]
    t0 = time.perf_counter()
    host.predict(arrays)
    return t_load, time.perf_counter() - t0


def in_window(app, window, demo, timeout: float = 120.0) -> float:
    """Seconds from picking the demo to its first prediction in the window."""
    state = window.state
    state.set_prediction(None)
    t0 = time.perf_counter()
    window.tools["demos"].open(demo)
    while time.perf_counter() - t0 < timeout:
        app.processEvents()
        info = state.model_info
        if (state.prediction is not None and info is not None
                and Path(info.path) == demo.path(demo.model)):
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise TimeoutError(f"{demo.name}: no prediction after {timeout} s")


def main() -> int:
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from maskviewer.demo import list_demos
    from maskviewer.gui.app import create_window

    demos = list_demos()
    import tensorflow  # noqa: F401  (imported once, outside the timings)

    rows = []
    for demo in demos:
        model_alone(demo)  # first call of each graph: tracing, not measured
        rows.append((demo, *model_alone(demo)))

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        window = create_window(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window.show()
        t0 = time.perf_counter()
        while window.controller.worker.device is None and time.perf_counter() - t0 < 120:
            app.processEvents()
            time.sleep(0.01)
        for demo in demos:
            in_window(app, window, demo)  # warm: each demo once
        gui = {demo.name: in_window(app, window, demo) for demo in demos}
        window.close()

    print(f"{'demo':16s} {'load ms':>9s} {'predict ms':>11s} {'window ms':>10s} {'ratio':>6s}")
    for demo, t_load, t_pred in rows:
        floor = t_load + t_pred
        g = gui[demo.name]
        print(f"{demo.name:16s} {t_load * 1e3:9.1f} {t_pred * 1e3:11.2f} {g * 1e3:10.1f} {g / floor:6.2f}")
    print("ratio = opened in the window until the first prediction / (load + one predict)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
