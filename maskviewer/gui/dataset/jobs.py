"""The data set tool's work off the GUI thread (Qt-free).

- :func:`open_job`: read a data set's index and the results table saved beside it;
- :func:`run_job`: score the model on every entry a batch at a time (the evaluator of
  ``maskviewer evaluate``, with the window's options), reusing the saved rows of unchanged
  entries; rows go to a :class:`RowSink` the window drains as progress arrives, and the table
  is saved beside the data set at the end (also when cancelled: the rows done are kept);
- :class:`Thumbnails`: small pictures of the rows in view, read on a thread of their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.cli.evaluate_run import EvalSettings, Evaluator
from maskviewer.core.dataset import DatasetIndex, Entry
from maskviewer.core.errors import Cancelled, MaskviewerError

#: the name of the results table saved beside a data set (a folder holds it hidden inside)
RESULTS_NAME = ".maskviewer-results.csv"
RESULTS_SUFFIX = ".maskviewer-results.csv"
THUMB_SIDE = 36
BATCH = 32


def results_path(index: DatasetIndex, opened: str, app_dir: str | Path) -> Path:
    """Where a data set's results are kept: inside a folder, beside a list or array file; a
    demo's held-out set (installed with the program, maybe read-only) in ``app_dir``."""
    if index.kind == "demo":
        return Path(app_dir) / f"demo-{index.name}{RESULTS_SUFFIX}"
    p = Path(opened)
    return p / RESULTS_NAME if p.is_dir() else p.with_name(p.name + RESULTS_SUFFIX)


@dataclass
class Opened:
    """A data set's index and the rows saved beside it by an earlier run (maybe of another
    model or other settings: they are shown until the run says which still hold)."""

    index: DatasetIndex
    source: str  # the path opened, or "demo:NAME"
    table: Path
    saved: list[dict] = field(default_factory=list)
    saved_meta: dict = field(default_factory=dict)


def open_job(source: str, app_dir: str | Path) -> Any:
    """The ``"dataset-open"`` job for a path, or ``"demo:NAME"`` for a demo's held-out set."""

    def job(ctx: Any) -> Opened:
        from maskviewer.io.dataset import demo_dataset, open_dataset
        from maskviewer.io.results_table import read_table

        if source.startswith("demo:"):
            from maskviewer.demo import get_demo

            index = demo_dataset(get_demo(source[5:]))
        else:
            index = open_dataset(source)
        ctx.check()
        out = Opened(index, source, results_path(index, source, app_dir))
        if out.table.exists():
            try:
                out.saved, out.saved_meta = read_table(out.table)
            except MaskviewerError:
                pass  # a damaged table is written anew by the next run
        return out

    return job


def window_argv(resize: str | None, scale: str | None, mask_mode: str | None, patches: Any,
                threshold: float | None, invert: bool) -> list[str]:
    """The window's options as ``maskviewer evaluate`` arguments (so the window and the command
    line score a data set alike)."""
    argv = ["--out", "unused.csv"]
    if resize:
        argv += ["--resize", resize]
    if scale:
        argv += [f"--scale={scale}"]
    if mask_mode and mask_mode != "none":
        argv += ["--mask-mode", mask_mode]
    if patches is not None:
        pair = lambda p: f"{p[0]}x{p[1]}"  # noqa: E731
        argv += ["--patch-size", pair(patches.size), "--patch-stride", pair(patches.stride),
                 "--patch-rate", pair(patches.rate), "--patch-padding", patches.padding.lower()]
    if threshold is not None:
        argv += ["--threshold", repr(float(threshold))]
        if invert:
            argv.append("--invert")
    return argv


@dataclass
class WindowSettings(EvalSettings):
    """The evaluator's settings and how the window reads each output (part of the fingerprint:
    rows scored with other kinds are not reused)."""

    kinds: dict = field(default_factory=dict)


@dataclass
class RunRequest:
    """Everything a run needs, taken on the GUI thread."""

    info: Any  # the ModelInfo the run is for
    index: DatasetIndex
    table: Path
    argv: list[str]
    labels: list[str] | None = None
    map_output: str | None = None
    ablation: bool = False
    kinds: dict = field(default_factory=dict)
    batch_size: int = BATCH
    rerun: bool = False


@dataclass
class RunOutcome:
    summary: dict
    reused: int
    scored: int
    classes: list[str] | None
    notes: list[str]
    seconds: float
    save_error: str = ""
    cancelled: bool = False


class RowSink:
    """Rows handed from the run to the window (thread-safe); ``reset`` marks a new run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self.classes: list[str] | None = None
        self.notes: list[str] = []
        self.thumbs: Thumbnails | None = None

    def put(self, rows: list[dict]) -> None:
        with self._lock:
            self._rows.extend(dict(r) for r in rows)

    def take(self) -> list[dict]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows


class _WindowEvaluator(Evaluator):
    """The evaluator, keeping a thumbnail of each picture it reads anyway."""

    sink: RowSink | None = None

    def prepared(self, item: Any) -> None:
        thumbs = self.sink.thumbs if self.sink is not None else None
        if thumbs is not None and item.image is not None:
            thumbs.put(item.entry.key, thumbnail(item.image.as_unit_float()))


def run_job(req: RunRequest, sink: RowSink) -> Any:
    """The ``"dataset"`` job: score ``req.index`` and stream the rows into ``sink``."""

    def job(ctx: Any) -> RunOutcome:
        return _run(ctx, req, sink)

    return job


def _run(ctx: Any, req: RunRequest, sink: RowSink) -> RunOutcome:
    from maskviewer.cli.evaluate import _export_like, build_parser
    from maskviewer.cli.evaluate_store import Store
    from maskviewer.cli.export_plan import make_plan

    host = ctx.host
    ctx.require_model(req.info)
    t0 = time.perf_counter()
    plan = make_plan(_export_like(build_parser().parse_args(req.argv), req.index), host)
    if req.labels:
        plan.labels = list(req.labels)
    settings = WindowSettings(None, req.map_output, req.ablation, req.batch_size, kinds=dict(req.kinds))
    evaluator = _WindowEvaluator(host, req.index, plan, settings)
    evaluator.sink = sink
    evaluator.kinds.set_model(host.info, dict(req.kinds))
    sink.classes = evaluator.classes
    if any(e.inputs for e in req.index.entries):  # the entries give their other inputs themselves
        plan.notes = [n for n in plan.notes if "--input" not in n]
    sink.notes = list(plan.notes)
    store = Store(req.table, host, req.index, plan, settings, None)
    reuse = {} if req.rerun else store.reusable()
    entries = req.index.entries
    sink.put([reuse[e.key] for e in entries if e.key in reuse])
    todo = [e for e in entries if e.key not in reuse]
    fresh: dict[str, dict] = {}
    pending: list[dict] = []

    def progress(done: int, _total: int) -> None:
        sink.put(pending)
        pending.clear()
        ctx.progress(len(entries) - len(todo) + done, len(entries))

    ctx.progress(len(entries) - len(todo), len(entries))
    cancelled = False
    try:
        for row in evaluator.rows(todo, progress):
            fresh[row["key"]] = row
            pending.append(row)
    except Cancelled:
        cancelled = True
    rows = [r for e in entries if (r := fresh.get(e.key) or reuse.get(e.key)) is not None]
    out = RunOutcome({}, len(reuse), len(fresh), evaluator.classes, list(plan.notes),
                     time.perf_counter() - t0, cancelled=cancelled)
    try:
        out.summary = store.record(rows, out.seconds)
    except (OSError, MaskviewerError) as exc:
        out.save_error = f"{req.table}: {getattr(exc, 'strerror', None) or exc}"
    if cancelled:  # the rows done are saved and kept; the window hears "cancelled"
        raise Cancelled("cancelled")
    return out


# -- thumbnails ------------------------------------------------------------------------------------


def thumbnail(unit: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """A picture in 0..1 ``(H, W, C)`` as a small ``(h, w, 3)`` uint8 RGB (nearest pixels)."""
    a = np.asarray(unit, dtype=np.float32)
    h, w = a.shape[:2]
    k = max(h, w) / side
    if k > 1:
        rows = np.minimum((np.arange(max(1, round(h / k))) * k).astype(int), h - 1)
        cols = np.minimum((np.arange(max(1, round(w / k))) * k).astype(int), w - 1)
        a = a[rows][:, cols]
    c = a.shape[2]
    rgb = a[..., :3] if c >= 3 else np.repeat(a[..., :1], 3, axis=2)
    lo, hi = float(np.nanmin(rgb)), float(np.nanmax(rgb))
    if hi > 1.0 or lo < 0.0:  # values outside 0..1 (a float array): stretch
        rgb = (rgb - lo) / (hi - lo if hi > lo else 1.0)
    return np.ascontiguousarray(np.clip(np.nan_to_num(rgb) * 255 + 0.5, 0, 255).astype(np.uint8))


class Thumbnails:
    """Small pictures by entry key: kept (the most recent :attr:`limit`), read on request on a
    thread of their own, so the table never waits for a file."""

    def __init__(self, limit: int = 4000) -> None:
        from maskviewer.io.dataset import PictureReader

        self.limit = limit
        self.reader = PictureReader()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._asked: set[str] = set()
        self._fresh: list[str] = []
        self._outstanding = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dataset-thumbnails")
        self._generation = 0

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: str, thumb: np.ndarray) -> None:
        with self._lock:
            self._cache[key] = thumb
            self._cache.move_to_end(key)
            while len(self._cache) > self.limit:
                self._cache.popitem(last=False)
            self._fresh.append(key)

    def request(self, entries: list[Entry]) -> None:
        """Read the thumbnails of ``entries`` that are neither kept nor asked for."""
        with self._lock:
            todo = [e for e in entries if e.key not in self._cache and e.key not in self._asked]
            self._asked.update(e.key for e in todo)
            self._outstanding += len(todo)
            generation = self._generation
        if todo:
            self._pool.submit(self._read, todo, generation)

    def _read(self, entries: list[Entry], generation: int) -> None:
        for e in entries:
            if generation != self._generation:
                return
            try:
                thumb = thumbnail(self.reader.picture(e.image).as_unit_float())
            except (MaskviewerError, OSError, ValueError, MemoryError):
                thumb = np.zeros((4, 4, 3), np.uint8)
            with self._lock:
                self._outstanding = max(0, self._outstanding - 1)
            self.put(e.key, thumb)

    def take_fresh(self) -> list[str]:
        """Keys whose thumbnail arrived since the last call."""
        with self._lock:
            fresh, self._fresh = self._fresh, []
            return fresh

    def pending(self) -> bool:
        with self._lock:
            return bool(self._fresh) or self._outstanding > 0

    def reset(self) -> None:
        """Another data set: forget every picture and drop the requests waiting."""
        from maskviewer.io.dataset import PictureReader

        with self._lock:
            self._generation += 1
            self._cache.clear()
            self._asked.clear()
            self._fresh.clear()
            self._outstanding = 0
            self.reader = PictureReader()

    def close(self) -> None:
        self._generation += 1
        self._pool.shutdown(wait=False, cancel_futures=True)
