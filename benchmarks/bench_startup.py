"""Startup and responsiveness.

1. Time from launching ``maskviewer`` to the window shown, divided by a bare
   ``python -c "import tensorflow"`` (target <= 0.3): the window must not wait for TensorFlow.
2. The longest GUI event-loop stall while TensorFlow loads, a model loads, and inference runs
   (target < 50 ms), measured with a 2 ms timer on the GUI thread.

    python benchmarks/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_until_line(cmd: list[str], marker: str | None, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        if marker is None:
            proc.wait(timeout=120)
            return time.perf_counter() - t0
        for line in proc.stdout:
            if line.strip() == marker:
                return time.perf_counter() - t0
        raise RuntimeError(f"{cmd} ended without printing {marker}")
    finally:
        proc.kill()
        proc.wait()


def startup_ratio(repeats: int) -> tuple[float, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "MASKVIEWER_QUIT_AFTER_SHOWN": "1",
           "MASKVIEWER_SETTINGS": str(Path(os.environ.get("TMPDIR", "/tmp")) / "mv_bench_settings.ini")}
    shown, tf_import = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        shown.append(time_until_line([sys.executable, "-m", "maskviewer"], "SHOWN", env))
        tf_import.append(time_until_line([sys.executable, "-c", "import tensorflow"], None, env))
    return statistics.median(shown), statistics.median(tf_import)


def gui_stall(cycles: int) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from maskviewer.demo import get_demo
    from maskviewer.gui.app import create_window

    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(Path("/tmp") / "mv_bench_stall.ini"), QSettings.Format.IniFormat)
    settings.clear()
    window = create_window(settings, start_backend=False)
    window.show()
    demo = get_demo("digits")
    phases: dict[str, float] = {}
    phase = ["backend"]
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        gap = now - last[0]
        phases[phase[0]] = max(phases.get(phase[0], 0.0), gap)
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    timer.start()
    c = window.controller
    done = {"predictions": 0}
    c.state.prediction_changed.connect(lambda p: done.__setitem__("predictions", done["predictions"] + 1))
    t0 = time.perf_counter()
    c.start()
    while c.worker.device is None and time.perf_counter() - t0 < 120:
        app.processEvents()
    phase[0] = "model load"
    c.open_image(str(demo.path(demo.images[0])))
    c.open_model(str(demo.path(demo.model)))
    while done["predictions"] < 1 and time.perf_counter() - t0 < 180:
        app.processEvents()
    phase[0] = "inference"
    images = [str(demo.path(p)) for p in demo.images]
    for i in range(cycles):
        c.open_image(images[i % len(images)])
        target = done["predictions"] + 1
        while done["predictions"] < target and time.perf_counter() - t0 < 300:
            app.processEvents()
    timer.stop()
    window.close()
    return {k: v for k, v in phases.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=50)
    args = ap.parse_args()
    shown, tf_import = startup_ratio(args.repeats)
    print(f"launch -> window shown     : {shown * 1000:7.0f} ms (median of {args.repeats})")
    print(f"python -c 'import tensorflow': {tf_import * 1000:7.0f} ms")
    print(f"ratio (target <= 0.3)      : {shown / tf_import:7.3f}")
    stalls = gui_stall(args.cycles)
    for phase, ms in stalls.items():
        print(f"longest GUI stall during {phase:12s}: {ms:6.1f} ms")
    print(f"longest GUI stall overall (target < 50 ms): {max(stalls.values()):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
