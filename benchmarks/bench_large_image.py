"""Memory and time for a large image from a small file: a 14,000² PNG of a few hundred KB.

Each case runs in a fresh Python process and reports its peak resident memory (``VmHWM``
from /proc/self/status, checked against ``ru_maxrss`` of the child) and wall time:

- ``export``: ``maskviewer export IMAGE --model digits_cnn.keras --layer conv1`` (one layer
  map, its picture and overlay at the image's resolution);
- ``window``: the main window (offscreen) opens the image and the model, shows a layer map,
  then zooms in twice (full-resolution tiles of the visible region) and out again.

Run::

    PYTHONPATH=. python benchmarks/bench_large_image.py [--side 14000] [--mode L|RGB] [--cases export,window]

Before this work (the issue's figures, same image and command): the export peaked at 16.4 GB
and took 64 s for one layer map; under a memory limit it aborted the whole run.

Colour PNGs: Pillow decodes RGB into 4 bytes a pixel (784 MB at 14,000²) beside the 588 MB
array; ``io/png_bands`` decodes large 8-bit PNGs a band of rows at a time instead. Measured
in one session (2-core machine), before → after: RGB export 1.90 → 1.25 GB, RGB window
2.07 → 1.49 GB; grey export 0.98 → 0.88 GB, grey window 1.15 → 1.08 GB. The window holds
about 0.8 GB (Qt and TensorFlow) before any image is opened.

Level-of-detail view (gui/image_tiles): the overview shrank from 4096² to 2048² at most and is
drawn without pyqtgraph's rescaled copy (uint8 without levels); zoomed in, a tile of about the
view's size is read from the full image. Measured (same machine, RGB 14,000²): window 1.45 GB
(no zoom, before) → 1.43 GB in three runs with the zooms; export 1.25 → 1.24 GB. What stays:
0.82 GB of Qt and TensorFlow, the 0.59 GB image array, about 30 MB for the model, the map
and the display copies (VmRSS at each step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "resources" / "demo" / "digits_cnn.keras"
#: the target for both cases
BUDGET_GB = 1.5

_PEAK = """
import sys
if sys.argv[-1] == 'legacy':  # the whole-image paths this work replaced, for a same-run ratio
    from maskviewer.core import mapping, masks
    from maskviewer.gui import image_canvas
    from maskviewer.gui.patches import overlay
    from maskviewer.io import images
    from maskviewer.io.export import pictures
    # BAND_COPY_ABOVE also turns off the banded PNG decode (io/png_bands)
    mapping.SPARSE_RESIZE_ABOVE = pictures.BAND_ABOVE = images.BAND_COPY_ABOVE = 1 << 62
    image_canvas.DISPLAY_MAX_PIXELS = masks.LAZY_ABOVE = overlay.MAX_OUTLINED = 1 << 62

def _peak_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
"""

EXPORT_CASE = _PEAK + """
import json, sys, time
t0 = time.perf_counter()
from maskviewer.cli.export import export_main
rc = export_main([sys.argv[1], '--model', sys.argv[2], '--out', sys.argv[3], '--layer', 'conv1'])
print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t0, 'peak_kb': _peak_kb()}))
"""

WINDOW_CASE = _PEAK + """
import json, os, sys, time
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
t0 = time.perf_counter()
from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication.instance() or QApplication([])
from maskviewer.gui.app import create_window
win = create_window(QSettings(sys.argv[3], QSettings.Format.IniFormat))
win.resize(1280, 800)
win.show()

def wait(cond, timeout):
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise SystemExit('timed out')
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()

wait(lambda: win.controller.worker.device is not None, 120)
win.show_panel('Layers')
win.controller.open_image(sys.argv[1])
win.controller.open_model(sys.argv[2])
tool = win.tools['layers']
wait(lambda: tool.outcome is not None and (tool.outcome.error or tool.overlay.isVisible()), 300)
error = tool.outcome.error
app.processEvents()
win.grab()  # draw the window once, image and map included
seconds = time.perf_counter() - t0
tiles = getattr(win.canvas, 'tiles', None)
if tiles is not None and sys.argv[-1] != 'legacy':  # zoomed in: full-resolution tiles, then out
    for x, y, w in ((6000, 6000, 600), (9000, 2000, 1500), (0, 0, 14000)):
        win.canvas.view.setRange(xRange=(x, x + w), yRange=(y, y + w), padding=0)
        tiles.update_now()
        wait(lambda: not tiles.pending, 60)  # read on its own thread
        win.grab()
print(json.dumps({'rc': 1 if error else 0, 'error': str(error or ''), 'seconds': seconds,
                  'peak_kb': _peak_kb(), 'layer': tool.outcome.request.path}))
win.close()
"""


def make_image(path: Path, side: int, mode: str) -> None:
    """A mostly flat picture with a few shapes, saved by Pillow (a few hundred KB)."""
    from PIL import Image, ImageDraw

    grey = mode == "L"
    im = Image.new(mode, (side, side), 40 if grey else (40, 40, 40))
    draw = ImageDraw.Draw(im)
    s = side / 14000
    draw.ellipse([c * s for c in (2000, 2000, 9000, 9000)], fill=230 if grey else (230, 230, 230))
    draw.rectangle([c * s for c in (8000, 9000, 12500, 13000)], fill=120 if grey else (200, 60, 60))
    draw.polygon([(1000 * s, 13000 * s), (6000 * s, 9000 * s), (7000 * s, 13500 * s)],
                 fill=180 if grey else (60, 160, 220))
    im.save(path)


def run_case(code: str, args: list[str], timeout: float = 900) -> dict:
    """Run ``code`` in a fresh interpreter; its JSON line, with the child's ``ru_maxrss``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", QT_QPA_PLATFORM="offscreen")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"the case failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    # ru_maxrss of the children is their maximum: it tells this child's peak only if it grew
    result["ru_maxrss_kb"] = after if after > before else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=14000)
    parser.add_argument("--mode", choices=("L", "RGB"), default="L")
    parser.add_argument("--cases", default="export,window")
    parser.add_argument("--legacy", action="store_true",
                        help="also run each case with the whole-image paths (use a smaller --side: "
                        "at 14,000² they need many GB)")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        image = Path(tmp) / f"large_{args.side}.png"
        make_image(image, args.side, args.mode)
        size_kb = image.stat().st_size / 1024
        print(f"image: {args.side}×{args.side} {args.mode} PNG, {size_kb:.0f} KB; model {MODEL.name}")
        print(f"{'case':8} {'peak RSS':>10} {'time':>8}   (before this work: 16.4 GB, 64 s for the export)")
        runs = [(case, flag) for case in cases for flag in (["", "legacy"] if args.legacy else [""])]
        for n, (case, flag) in enumerate(runs):
            if case == "export":
                result = run_case(EXPORT_CASE, [str(image), str(MODEL), str(Path(tmp) / f"out{n}"), flag])
            elif case == "window":
                result = run_case(WINDOW_CASE, [str(image), str(MODEL), str(Path(tmp) / "settings.ini"), flag])
            else:
                parser.error(f"unknown case {case!r}")
            peak_gb = result["peak_kb"] / 1024**2
            ok = result["rc"] == 0 and peak_gb < BUDGET_GB
            failed |= not ok and not flag
            extra = f" error: {result.get('error')}" if result.get("error") else ""
            name = f"{case} (whole-image paths)" if flag else case
            print(f"{name:8} {peak_gb:>8.2f} GB {result['seconds']:>6.1f} s   "
                  f"{'within' if ok else 'OVER'} {BUDGET_GB} GB (exit {result['rc']}){extra}")
    return 1 if failed else 0


if __name__ == "__main__":
    t = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - t:.0f} s")
    sys.exit(code)
