"""Mask painting costs on a 4096x4096 image, measured in one run.

1. One brush dab including its undo record (target <= 0.1 ms for radius <= 100), against a
   napari-style numpy baseline (disk indices assigned, old values kept for undo).
2. Screen update per mouse event (target <= 8 ms): dab + dirty-rectangle overlay update +
   synchronous repaint of the view, against pyqtgraph ImageItem.drawAt and a full setImage.
3. Flood fill of a 4096x4096 region (target <= 150 ms), with and without the undo record,
   against scipy.ndimage.label and skimage.segmentation.flood.
4. Time from releasing a stroke to the updated prediction on the demo model, divided by one
   forward pass.

Run: ``QT_QPA_PLATFORM=offscreen python benchmarks/bench_masks.py``. Other work on the machine
makes the figures noisy: compare the ratios within one run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from maskviewer.core.masks import Brush, MaskSet, flood_fill  # noqa: E402

SIZE = 4096


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def stroke_path(n: int, radius: float, rng) -> list[tuple[float, float]]:
    """Mouse events along a wavy path, each about one dab spacing apart (one dab per event)."""
    step = max(radius / 2.0, 0.5) * 0.95
    pts, x, y, a = [], 500.0, 500.0, 0.3
    for _ in range(n):
        a += rng.normal(0, 0.15)
        x = float(np.clip(x + step * np.cos(a), 150, SIZE - 150))
        y = float(np.clip(y + step * np.sin(a), 150, SIZE - 150))
        pts.append((x, y))
    return pts


def bench_dabs() -> None:
    print("\n1. One brush dab including its undo record (4096², hard brush)")
    rng = np.random.default_rng(0)
    for radius in (5, 20, 50, 100):
        mset = MaskSet(SIZE, SIZE)
        mset.add("m")
        pts = stroke_path(400, radius, rng)
        stroke = mset.begin_stroke(Brush(radius, 1.0, 1.0))
        times = []
        for x, y in pts:
            t0 = time.perf_counter()
            stroke.add_point(x, y)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        entry = mset.end_stroke(stroke)
        commit = time.perf_counter() - t0
        # napari-style baseline: the disk's pixels assigned, their old values kept for undo
        data = np.zeros((SIZE, SIZE), np.float32)
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = yy * yy + xx * xx <= radius * radius
        base, undo = [], []
        for x, y in pts:
            t0 = time.perf_counter()
            cx, cy = int(round(x)), int(round(y))
            sl = data[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
            undo.append((cx, cy, sl[disk].copy()))
            sl[disk] = 1.0
            base.append(time.perf_counter() - t0)
        med, mean, p99 = statistics.median(times), statistics.fmean(times), np.percentile(times, 99)
        bmed = statistics.median(base)
        print(
            f"  r={radius:3d}: median {ms(med)}  mean {ms(mean)}  p99 {ms(p99)}   "
            f"numpy baseline median {ms(bmed)}  ratio {med / bmed:5.2f}x   "
            f"stroke end (undo entry) {ms(commit)}, {entry.nbytes / 1e6:.2f} MB kept"
        )


def bench_screen() -> None:
    print("\n2. Screen update per mouse event (4096² image and mask in a 1000x800 view)")
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from maskviewer.core.image import ImageData
    from maskviewer.gui.image_canvas import ImageCanvas
    from maskviewer.gui.masks.overlay import MaskOverlayItem

    app = QApplication.instance() or QApplication([])
    canvas = ImageCanvas()
    canvas.resize(1000, 800)
    img = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    canvas.set_image(ImageData(img, None, 255.0))
    canvas.show()
    app.processEvents()
    vp = canvas.viewport()
    radius = 30
    pts = stroke_path(150, radius, np.random.default_rng(2))

    mset = MaskSet(SIZE, SIZE)
    mask = mset.add("m")
    item = MaskOverlayItem(mask)
    item.setOpacity(0.5)
    canvas.add_overlay(item, 20)
    vp.repaint()
    stroke = mset.begin_stroke(Brush(radius))
    ours = []
    for x, y in pts:
        t0 = time.perf_counter()
        box = stroke.add_point(x, y)
        item.update_box(box)
        vp.repaint()  # paint now, synchronously, what Qt would paint at the next frame
        ours.append(time.perf_counter() - t0)
    mset.end_stroke(stroke)
    canvas.remove_overlay(item)

    # pyqtgraph's own painting: ImageItem.drawAt re-renders the whole image on every event
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 0] = 255
    lut[:, 3] = np.arange(256) // 2
    pg_item = pg.ImageItem(np.zeros((SIZE, SIZE), np.uint8), axisOrder="row-major", lut=lut, levels=(0, 255))
    canvas.add_overlay(pg_item, 20)
    k = 2 * radius + 1
    yy, xx = np.mgrid[:k, :k] - radius
    kernel = ((yy * yy + xx * xx) <= radius * radius).astype(np.uint8) * 255
    pg_item.setDrawKernel(kernel, mask=None, center=(radius, radius), mode="set")
    vp.repaint()
    draw_at = []
    for x, y in pts[:40]:
        t0 = time.perf_counter()
        pg_item.drawAt(pg.Point(x, y))
        vp.repaint()
        draw_at.append(time.perf_counter() - t0)
    # the float32 mask itself shown through ImageItem.setImage (levels 0..1): each event
    # converts the whole 4096² float image for display
    set_image = []
    fmask = MaskSet(SIZE, SIZE)
    fm = fmask.add("f")
    fstroke = fmask.begin_stroke(Brush(radius, 0.5))
    for x, y in pts[:40]:
        t0 = time.perf_counter()
        fstroke.add_point(x, y)
        pg_item.setImage(fm.data, autoLevels=False, levels=(0.0, 1.0))
        vp.repaint()
        set_image.append(time.perf_counter() - t0)
    canvas.remove_overlay(pg_item)
    canvas.close()
    o, d, s = (statistics.median(v) for v in (ours, draw_at, set_image))
    print(f"  dirty-rectangle overlay (ours):   median {ms(o)}  p90 {ms(np.percentile(ours, 90))}")
    print(f"  pyqtgraph ImageItem.drawAt uint8: median {ms(d)}   ({d / o:5.1f}x ours)")
    print(f"  ImageItem.setImage(float mask):   median {ms(s)}   ({s / o:5.1f}x ours)")


def bench_fill() -> None:
    print("\n3. Flood fill of a 4096² region")
    from scipy import ndimage
    from skimage.segmentation import flood

    base = np.zeros((SIZE, SIZE), np.float32)
    base[1000:1008, :3000] = 1.0  # a wall with a gap: the region is almost the whole image
    base[:, 2500:2504] = 1.0
    base[3000:3010, 2000:3000] = 1.0
    flood_fill(base.copy(), 10, 10, 0.5)  # import scipy.sparse once

    def best(fn, n=3):
        out = []
        for _ in range(n):
            arr = base.copy()
            t0 = time.perf_counter()
            fn(arr)
            out.append(time.perf_counter() - t0)
        return min(out), statistics.median(out)

    ours = best(lambda a: flood_fill(a, 10, 10, 0.5))

    runs = []
    for _ in range(3):
        mset = MaskSet(SIZE, SIZE)
        mset.add("m", base)
        mset._backup()  # the undo buffer exists once per image, before the first edit
        t0 = time.perf_counter()
        mset.fill(10, 10, 0.5)
        runs.append(time.perf_counter() - t0)
    undo = min(runs), statistics.median(runs)

    def label(a):
        lab, _ = ndimage.label(a == a[10, 10])
        a[lab == lab[10, 10]] = 0.5

    lab = best(label)
    sk = best(lambda a: a.__setitem__(flood(a, (10, 10), connectivity=1), 0.5), n=2)
    print(f"  ours (runs + graph):              best {ms(ours[0])}  median {ms(ours[1])}")
    print(f"  ours + undo record:               best {ms(undo[0])}  median {ms(undo[1])}")
    print(f"  scipy.ndimage.label:              best {ms(lab[0])}  ({lab[0] / ours[0]:4.1f}x ours)")
    print(f"  skimage.segmentation.flood:       best {ms(sk[0])}  ({sk[0] / ours[0]:4.1f}x ours)")


def bench_release_to_prediction() -> None:
    print("\n4. Release of a stroke -> updated prediction, demo model (digits, multiply mode)")
    from PySide6.QtCore import QPointF, QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from maskviewer.gui.app import create_window
    from maskviewer.gui.demo_gallery import open_demo

    app = QApplication.instance() or QApplication([])
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_masks_settings.ini"
    tmp.unlink(missing_ok=True)
    win = create_window(QSettings(str(tmp), QSettings.Format.IniFormat))
    win.show()

    def wait(cond, timeout=120.0):
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            time.sleep(0.0005)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError

    c = win.controller
    wait(lambda: c.worker.device is not None)
    open_demo(win, "digits")
    wait(lambda: win.state.prediction is not None)
    tool = win.tools["masks"]
    tool.ask_unsaved = lambda: "discard"
    tool.set_feed("multiply")
    wait(lambda: not c._predict_timer.isActive() and not c.worker.busy())
    tool.panel.size.setValue(4)
    vp = win.canvas.viewport()

    def pos(x, y):
        return win.canvas.mapFromScene(win.canvas.view.mapViewToScene(QPointF(x, y)))

    got = []
    win.state.prediction_changed.connect(lambda p: got.append((time.perf_counter(), p)))
    latencies, forwards = [], []
    rng = np.random.default_rng(3)
    for i in range(25):
        tool.set_tool("eraser" if i % 2 else "brush")
        a = rng.uniform(2, 26, 2)
        b = rng.uniform(2, 26, 2)
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos(*a))
        QTest.mouseMove(vp, pos(*(a + b) / 2))
        got.clear()
        t0 = time.perf_counter()
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos(*b))
        wait(lambda: bool(got))
        latencies.append(got[0][0] - t0)
        forwards.append(got[0][1].seconds)
        wait(lambda: not c._predict_timer.isActive() and not c.worker.busy())
    win.close()
    lat, fwd = statistics.median(latencies), statistics.median(forwards)
    print(f"  release -> prediction_changed:    median {ms(lat)}  (min {ms(min(latencies))})")
    print(f"  one forward pass (model call):    median {ms(fwd)}")
    print(f"  ratio:                            {lat / fwd:5.2f}x a forward pass")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["dabs", "screen", "fill", "predict"]
    print(f"maskviewer mask benchmarks, {SIZE}x{SIZE}; figures are noisy on a shared machine")
    if "dabs" in parts:
        bench_dabs()
    if "screen" in parts:
        bench_screen()
    if "fill" in parts:
        bench_fill()
    if "predict" in parts:
        bench_release_to_prediction()
