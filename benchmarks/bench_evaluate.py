"""Evaluating a folder of small images: throughput against plain Keras, and memory as it grows.

The data set is the digits demo's held-out digits written as 28×28 PNG files in class
sub-folders, repeated to ``--images`` files. Each case runs in a fresh Python process:

- ``evaluate``: ``maskviewer evaluate DIR --model digits_cnn.keras --out results.csv``
  (reading, decoding, input mapping, the model, one row per image, the table);
- ``plain``: ``model.predict`` over a ``tf.data`` pipeline that reads and decodes the same files
  (``read_file`` → ``decode_png`` → ``/255``, batched, prefetched, parallel map) — what a
  Keras user would write;

and reports images per second, the ratio evaluate ÷ plain, and the peak resident memory
(``VmHWM``) of ``evaluate`` at 1,000 and at ``--images`` images. Both cases time the same
scope: from a loaded, warmed-up model and the list of files to every answer — plain builds its
pipeline inside the timed part, as evaluate builds its own (imports, model loading and the
input pipeline's first start are excluded from both). Each case makes ``--repeat`` passes in
its process and reports their median; the cases run in ``--rounds`` rounds, one after the
other (every other round plain first), and the ratio is the median of the rounds' ratios, so
a shared machine's drift in speed falls on both alike. The ratio against plain's fastest
single pass is printed too (plain's passes are bimodal: a tuned ``tf.data`` iterator sometimes
takes a second more to let go of its threads).

Run::

    PYTHONPATH=. python benchmarks/bench_evaluate.py [--images 10000] [--batch 128] [--repeat 3] [--rounds 3]

The plain pipeline runs at Keras's default batch (32) and at ``--batch``; the ratio is taken
against the faster of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_PEAK = """
def _peak_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
"""

EVALUATE_CASE = _PEAK + """
import json, statistics, sys, time
from maskviewer.cli.args import load_model
from maskviewer.cli import evaluate as E
from maskviewer.io.dataset import open_dataset
import maskviewer.cli.evaluate_run, maskviewer.cli.evaluate_store, maskviewer.inference.png_stream  # imports: start-up
args = E.build_parser().parse_args([sys.argv[1], '--model', sys.argv[2], '--out', sys.argv[3], '--batch-size', sys.argv[4], '--quiet', '--rerun'])
index = open_dataset(args.data)
host = load_model(args)  # loads the model and traces its call, as the plain case's warm-up
import tensorflow as tf
for _ in tf.data.Dataset.range(1):  # the input pipeline's first use: start-up, as in the plain case
    pass
times = []
for _ in range(int(sys.argv[5])):
    t0 = time.perf_counter()
    rc = E._run(args, host, index, index.entries, None, E.table_path(args.out, None))
    times.append(time.perf_counter() - t0)
print(json.dumps({'rc': rc, 'seconds': statistics.median(times), 'all': times, 'images': len(index), 'peak_kb': _peak_kb()}))
"""

PLAIN_CASE = _PEAK + """
import json, statistics, sys, time
import tensorflow as tf, keras
folder, model_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(str(p) for p in __import__('pathlib').Path(folder).rglob('*.png'))
model = keras.saving.load_model(model_path)
def load(path):
    x = tf.io.decode_png(tf.io.read_file(path), channels=1)
    return tf.image.convert_image_dtype(x, tf.float32)  # /255
def pipeline(paths):
    ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
model.predict(pipeline(files[:batch]), verbose=0)  # traced once, as the evaluator's model is warmed up
times = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter()  # the pipeline is built in the timed part, as evaluate builds its own
    out = model.predict(pipeline(files), verbose=0)
    times.append(time.perf_counter() - t0)
print(json.dumps({'seconds': statistics.median(times), 'all': times, 'images': len(out), 'peak_kb': _peak_kb()}))
"""


def make_images(folder: Path, n: int) -> None:
    """``n`` PNG files of the held-out digits in class sub-folders."""
    import numpy as np

    from maskviewer.demo import get_demo
    from maskviewer.io.images import save_image

    demo = get_demo("digits")
    x = np.load(demo.path("digits_test_x.npy"))
    y = np.load(demo.path("digits_test_y.npy"))
    for k in range(n):
        i = k % len(x)
        sub = folder / str(int(y[i]))
        sub.mkdir(parents=True, exist_ok=True)
        save_image(sub / f"d{k:06d}.png", x[i])


def run_case(code: str, *argv: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rate(case: dict) -> float:
    return case["images"] / case["seconds"]


def _passes(case: dict) -> str:
    return ", ".join(f"{t:.2f}" for t in case["all"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=128, help="evaluate's batch (its default)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per case and round; the median is reported")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the cases one after the other (a shared machine's speed drifts)")
    a = ap.parse_args()
    from maskviewer.demo import get_demo

    model = str(get_demo("digits").path("digits_cnn.keras"))
    print(f"images: {a.images}, evaluate batch {a.batch}, {os.cpu_count()} CPUs, "
          f"{a.rounds} rounds of {a.repeat} passes per case")
    ratios, strict, evs, plain_best = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        make_images(small, 1000)
        make_images(big, a.images)
        r = str(a.repeat)
        for k in range(a.rounds):
            def evaluate() -> dict:
                return run_case(EVALUATE_CASE, str(big), model, str(Path(tmp) / "b.csv"), str(a.batch), r)

            def plain() -> dict:
                return {b: run_case(PLAIN_CASE, str(big), model, str(b), r) for b in sorted({32, a.batch})}

            if k % 2:  # every other round the plain cases first
                plains, ev = plain(), evaluate()
            else:
                ev, plains = evaluate(), plain()
            best = max(plains.values(), key=_rate)
            ratios.append(_rate(ev) / _rate(best))
            fastest = min(t for p in plains.values() for t in p["all"])
            strict.append(fastest / ev["seconds"])
            evs.append(ev)
            plain_best.append(best)
            print(f"round {k + 1}: evaluate {_rate(ev):6.0f} images/s (passes {_passes(ev)} s); "
                  + "; ".join(f"plain batch {b} {_rate(p):6.0f} images/s (passes {_passes(p)} s)"
                              for b, p in plains.items())
                  + f"; ratio {ratios[-1]:.2f}")
        ev_small = run_case(EVALUATE_CASE, str(small), model, str(Path(tmp) / "s.csv"), str(a.batch), r)
    print("evaluate: reading, decoding, input mapping, the model, a row per image, the table and the "
          "aggregates; plain: model.predict over tf.data (batch 32 and the evaluate batch; the faster counts)")
    print(f"ratio evaluate / plain throughput: {statistics.median(ratios):.2f} (median of the rounds: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= 0.8)")
    print(f"against plain's fastest single pass: {statistics.median(strict):.2f} "
          f"({', '.join(f'{x:.2f}' for x in strict)})")
    big_peak = max(e["peak_kb"] for e in evs)
    print(f"peak RSS evaluate: {ev_small['peak_kb'] / 1024:.0f} MiB at 1,000 images, "
          f"{big_peak / 1024:.0f} MiB at {a.images:,} (ratio {big_peak / ev_small['peak_kb']:.2f}); "
          f"plain {max(p['peak_kb'] for p in plain_best) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
