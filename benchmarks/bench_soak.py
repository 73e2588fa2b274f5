"""Soak: many paint-then-infer cycles on the digits demo; resident memory must stay flat.

Two levels, each in its own process so each has its own memory baseline:

``worker``
    The inference path without widgets: a stroke painted into a :class:`MaskSet` (the app's
    brush code, with its undo history), the model input built from the image multiplied by
    the mask (``prepare_masked_input``), run as a job on the :class:`InferenceWorker` thread
    through ``ModelHost.predict``; results delivered back through the Qt event loop.
``window``
    The whole application offscreen: the masks tool paints a stroke (press, drags, release),
    which schedules a prediction through the controller exactly as a mouse stroke does; the
    cycle ends when the predictions panel has the new result.

Resident memory (``/proc/self/statm``, after a garbage collection) after cycle 100 is the
baseline; the figure at the end must be within 10 % of it.

    python benchmarks/bench_soak.py [--cycles 1000] [--level worker|window|both]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM_CYCLES = 100
LIMIT = 0.10


def rss_mib() -> float:
    """Resident set size of this process in MiB, after collecting garbage."""
    gc.collect()
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as fh:
            resident = int(fh.read().split()[1])
        return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stroke_points(rng, size: int) -> list[tuple[float, float]]:
    x, y = rng.uniform(2, size - 3, 2)
    points = [(x, y)]
    for _ in range(4):
        x = float(min(max(x + rng.uniform(-4, 4), 0), size - 1))
        y = float(min(max(y + rng.uniform(-4, 4), 0), size - 1))
        points.append((x, y))
    return points


def _wait(app, done, timeout: float = 60.0) -> None:
    from PySide6.QtCore import QEventLoop, QThread

    end = time.perf_counter() + timeout
    while not done():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        if done():
            return
        if time.perf_counter() > end:
            raise TimeoutError("no result within the time limit")
        QThread.usleep(200)


def run_worker_level(cycles: int) -> dict:
    import numpy as np
    from PySide6.QtCore import QCoreApplication

    from maskviewer.core.mapping import InputMapping
    from maskviewer.core.mask_feed import mask_source, prepare_masked_input
    from maskviewer.core.masks import Brush, MaskSet
    from maskviewer.demo import get_demo
    from maskviewer.gui.worker import InferenceWorker
    from maskviewer.io.images import load_image

    app = QCoreApplication.instance() or QCoreApplication([])
    demo = get_demo("digits")
    worker = InferenceWorker()
    results: dict = {}
    worker.job_finished.connect(lambda kind, gen, result: results.__setitem__(gen, result))
    worker.job_failed.connect(lambda kind, gen, msg, exc: results.__setitem__(gen, RuntimeError(msg)))
    worker.start()

    def run(kind, fn):
        gen = worker.submit(kind, fn)
        _wait(app, lambda: gen in results)
        result = results.pop(gen)
        if isinstance(result, Exception):
            raise result
        return result

    info = run("load", lambda ctx: ctx.host.load(str(demo.path(demo.model))))
    spec = info.inputs[0]
    image = load_image(demo.path(demo.images[0]))
    masks = MaskSet(image.height, image.width, image_path=image.path)
    masks.add("mask")
    masks.set_active("mask")
    masks.active.data[:] = 1.0
    mapping = InputMapping.from_dict(
        {**InputMapping().to_dict(), "source": mask_source("multiply", "mask")}
    )
    rng = np.random.default_rng(0)
    brush = Brush(radius=3.0)
    marks, times = {}, []
    t_start = time.perf_counter()
    for cycle in range(1, cycles + 1):
        t0 = time.perf_counter()
        stroke = masks.begin_stroke(brush, erase=cycle % 2 == 0)
        for x, y in _stroke_points(rng, image.width):
            masks.stroke_to(stroke, x, y)
        masks.end_stroke(stroke)
        snapshot = {"mask": masks.active.data.copy()}  # as the masks tool hands it over

        def job(ctx, snapshot=snapshot):
            x, _frame = prepare_masked_input(image, mapping, spec.shape, snapshot)
            return ctx.host.predict({spec.name: x[None]})

        outputs = run("predict", job)
        assert next(iter(outputs.values())).shape == (1, 10)
        times.append(time.perf_counter() - t0)
        if cycle == WARM_CYCLES or cycle % 250 == 0 or cycle == cycles:
            marks[cycle] = rss_mib()
    elapsed = time.perf_counter() - t_start
    worker.stop()
    return {"marks": marks, "seconds": elapsed, "ms_per_cycle": 1000 * float(np.median(times))}


def run_window_level(cycles: int) -> dict:
    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from maskviewer.gui.app import create_window
    from maskviewer.gui.demo_gallery import open_demo
    from maskviewer.gui.masks.tool import MaskTool

    app = QApplication.instance() or QApplication([])
    settings_path = Path(os.environ.get("TMPDIR", "/tmp")) / "mv_soak_settings.ini"
    settings_path.unlink(missing_ok=True)
    window = create_window(QSettings(str(settings_path), QSettings.Format.IniFormat))
    window.show()
    c, state = window.controller, window.state
    _wait(app, lambda: c.worker.device is not None, 120)
    open_demo(window, "digits")
    _wait(app, lambda: state.prediction is not None, 120)
    tool = next(t for t in window.tools.values() if isinstance(t, MaskTool))
    tool.set_feed("multiply")
    tool.maskset.active.data[:] = 1.0
    tool.set_tool("brush")
    from maskviewer.inference.probe import _PROBES

    def bounded_caches_mib() -> dict:
        """What the app keeps on purpose, each under its own byte cap: the layers dock's
        activation cache (a new mask is a new input, so every cycle adds an entry until the
        cap) and the undo history."""
        probe = _PROBES.get(c.worker.host.model)
        return {
            "activation cache": (probe.cache.nbytes if probe is not None else 0) / 2**20,
            "undo history": tool.maskset.history.nbytes / 2**20,
        }

    rng = np.random.default_rng(0)
    marks, times, caches = {}, [], {}
    t_start = time.perf_counter()
    for cycle in range(1, cycles + 1):
        t0 = time.perf_counter()
        before = state.prediction
        points = _stroke_points(rng, state.image.width)
        # erase (shift held) where the mask is set, paint where it is not: every stroke changes
        # the mask, so every stroke asks for a prediction (an unchanged mask rightly does not)
        x0, y0 = points[0]
        erase = bool(tool.current_mask()[round(y0), round(x0)] > 0.5)
        tool._press(x0, y0, erase)
        for x, y in points[1:]:
            tool._drag(x, y)
        tool._release(*points[-1])
        _wait(app, lambda before=before: state.prediction is not before and state.prediction is not None)
        if c.last_prediction_error:
            raise RuntimeError(c.last_prediction_error)
        times.append(time.perf_counter() - t0)
        if cycle == WARM_CYCLES or cycle % 250 == 0 or cycle == cycles:
            marks[cycle] = rss_mib()
            caches[cycle] = bounded_caches_mib()
    elapsed = time.perf_counter() - t_start
    # empty the activation cache on the inference thread and hand freed memory back to the
    # system: what remains above the baseline is what the app did not mean to keep
    released: list[int] = []
    c.worker.job_finished.connect(lambda kind, gen, _r: released.append(gen))
    gen = c.worker.submit(
        "soak_release", lambda ctx: [p.cache.clear() for p in list(_PROBES.values())]
    )
    _wait(app, lambda: gen in released)
    _malloc_trim()
    after_release = rss_mib()
    for ms in tool.sets.values():  # nothing to save: close without asking
        for name in ms.names:
            ms.mark_saved(name)
    window.close()
    return {"marks": marks, "seconds": elapsed, "ms_per_cycle": 1000 * float(np.median(times)),
            "caches": caches, "after_release": after_release}


def _malloc_trim() -> None:
    """Return freed heap pages to the system (glibc keeps them otherwise), where possible."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(level: str, cycles: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    result = run_worker_level(cycles) if level == "worker" else run_window_level(cycles)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--level", choices=["worker", "window", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.level, args.cycles)
        return 0
    levels = ["worker", "window"] if args.level == "both" else [args.level]
    ok = True
    print(f"soak: {args.cycles} paint-then-infer cycles on the digits demo "
          f"(baseline after cycle {WARM_CYCLES}, limit +{LIMIT:.0%})")
    for level in levels:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--level", level, "--cycles", str(args.cycles)],
            capture_output=True, text=True, timeout=3600,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{level}: FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            ok = False
            continue
        result = json.loads(lines[-1][len("RESULT "):])
        marks = {int(k): v for k, v in result["marks"].items()}
        base, end = marks[min(marks)], marks[max(marks)]
        growth = (end - base) / base
        passed = growth <= LIMIT
        ok &= passed
        trend = "  ".join(f"#{k}: {v:.1f}" for k, v in sorted(marks.items()))
        print(f"{level:>6}: {result['seconds']:.1f} s, median {result['ms_per_cycle']:.1f} ms/cycle; "
              f"RSS MiB {trend}")
        per_cycle = (end - base) * 1024 / max(max(marks) - min(marks), 1)
        print(f"{'':>6}  growth from cycle {min(marks)} to {max(marks)}: {end - base:+.1f} MiB "
              f"({growth:+.2%}, ratio {end / base:.3f}; {per_cycle:+.1f} KiB/cycle) "
              f"-> {'PASS' if passed else 'FAIL'}")
        if result.get("caches"):
            first, last = result["caches"][str(min(marks))], result["caches"][str(max(marks))]
            held = {k: last[k] - first[k] for k in last}
            rest = (end - base) - sum(held.values())
            parts = ", ".join(f"{k} {v:+.1f} MiB" for k, v in held.items())
            print(f"{'':>6}  of which bounded caches: {parts}; the rest {rest:+.1f} MiB "
                  f"({rest * 1024 / max(max(marks) - min(marks), 1):+.1f} KiB/cycle)")
        if "after_release" in result:
            kept = result["after_release"] - base
            print(f"{'':>6}  after emptying the activation cache: {result['after_release']:.1f} MiB, "
                  f"{kept:+.1f} MiB over the baseline (undo history {held['undo history']:+.1f} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
