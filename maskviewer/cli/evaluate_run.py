"""Running a model over a data set: entries streamed in batches, one results row per entry.

Batches flow through three stages at once, so the model is not kept waiting for files and at
most a few batches are in memory, whatever the size of the data set:

- reading: small 8-bit PNG files are decoded by the backend's input pipeline on threads of
  its own (:mod:`maskviewer.inference.png_stream`); other files by a pool (worker processes
  for large data sets, threads otherwise); pictures of one size that feed the model by
  themselves are mapped to its input together (:func:`~maskviewer.core.patches.prepare_patches`,
  bit for bit as one at a time);
- the model: one batch at a time on a thread of its own (the calling thread hands it each
  batch and never calls the model itself meanwhile: one caller at a time, as everywhere);
- rows: the calling thread reads the batch before's answers (a batch at a time,
  :func:`~maskviewer.core.evaluation.answer_rows`) and prepares the next.

Each entry's row is built by :mod:`maskviewer.core.evaluation`; an entry that cannot be read
or run gets a row with its ``error_message`` and the others go on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from maskviewer.cli.export_items import image_mappings, model_arrays, model_arrays_batch
from maskviewer.cli.export_plan import Plan
from maskviewer.core import evaluation as ev
from maskviewer.core.dataset import DatasetIndex, Entry
from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import SPARSE_RESIZE_ABOVE
from maskviewer.io.dataset import PictureReader

#: the mask variants an ablation compares (``painted`` is the entry's own mask, named "mask")
VARIANT_NAMES = {"painted": "mask", "zeros": "none", "ones": "ones", "random": "random", "inverted": "inverted"}
ABLATION_SEED = 0
#: threads reading entries, and how many batches they read ahead of the model
READERS = 4
AHEAD = 2
#: batches handed to the model's thread before the oldest one's rows are written
MODEL_AHEAD = 2
#: data sets at least this large are read by worker processes (starting them takes a second)
PROCESS_MIN = 2000


@dataclass(slots=True)
class EvalItem:
    """One entry, read and turned into model inputs (or the reason it could not be)."""

    entry: Entry
    image: ImageData | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    mappings: dict = field(default_factory=dict)
    others: dict[str, ImageData] = field(default_factory=dict)
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    variants: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    error: str = ""
    #: ``(arrays, j)`` when ``arrays`` are row ``j`` of inputs mapped together (:meth:`Preparer.prepare_many`)
    stacked: tuple[dict[str, np.ndarray], int] | None = None
    #: the inputs' names and shapes (set for the group when mapped together)
    key: tuple | None = None

    def shapes(self) -> tuple:
        if self.key is None:
            self.key = tuple((k, v.shape) for k, v in self.arrays.items())
        return self.key


@dataclass
class EvalSettings:
    """What is scored, besides the plan's input mapping, masks, patches and threshold."""

    output: str | None  # the vector output answered (None: the first)
    map_output: str | None  # the image-shaped output scored against references
    ablation: bool = False
    batch_size: int = 128


class Preparer:
    """Reads entries and builds their model inputs; picklable, so worker processes can."""

    def __init__(self, info: Any, plan: Plan, ablation: bool, reader: PictureReader | None = None) -> None:
        self.info, self.plan, self.ablation = info, plan, ablation
        self.reader = reader or PictureReader()
        self._plain_mappings: dict | None = None
        self._plain_alone = False  # the plain mappings feed every input from the picture

    def __getstate__(self) -> dict:
        return {"info": self.info, "plan": self.plan, "ablation": self.ablation}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["info"], state["plan"], state["ablation"])

    def prepare_many(self, entries: list[Entry], images: list[ImageData | None] | None = None) -> list[EvalItem]:
        """Read each entry's pictures (``images``: those decoded already) and build its model
        inputs; errors are kept in the items. Pictures of one size and type that feed the model
        by themselves (no mask, no other input's picture) are mapped together, as one array."""
        items = [EvalItem(e) for e in entries]
        groups: dict[tuple, list[EvalItem]] = {}
        for it, image in zip(items, images or [None] * len(items), strict=True):
            _guard(it, self._read, image)
            if it.error:
                continue
            if self._alone(it):
                assert it.image is not None
                a = it.image.array
                groups.setdefault((a.shape, a.dtype.str, it.image.value_max), []).append(it)
            else:
                _guard(it, self._arrays)
        for group in groups.values():
            try:
                assert group[0].image is not None
                stack = np.stack([it.image.array for it in group])  # type: ignore[union-attr]
                arrays = model_arrays_batch(self.info, stack, group[0].image.value_max, group[0].mappings)
            except (MaskviewerError, MemoryError):
                for it in group:  # each picture's own words for what is wrong
                    _guard(it, self._arrays)
                continue
            key = tuple((k, v.shape[1:]) for k, v in arrays.items())
            for j, it in enumerate(group):
                it.arrays, it.stacked, it.key = {k: v[j] for k, v in arrays.items()}, (arrays, j), key
        return items

    def _read(self, item: EvalItem, image: ImageData | None) -> None:
        """The entry's pictures, mask, reference and input mappings."""
        reader, entry = self.reader, item.entry
        item.image = image = image if image is not None else reader.picture(entry.image)
        if entry.mask is not None:
            item.mask = reader.mask(entry.mask, (image.height, image.width))
        if entry.reference is not None:
            item.reference = reader.reference(entry.reference)
        if entry.inputs:
            item.others = {name: reader.picture(src) for name, src in entry.inputs.items()}
        if image.raw is None:  # the mappings depend on the picture only through a stored array
            if self._plain_mappings is None:
                m = self._plain_mappings = image_mappings(self.info, None, self.plan)
                self._plain_alone = len(m) == len(self.info.inputs) and all(v.source == "image" for v in m.values())
            item.mappings = self._plain_mappings
        else:
            item.mappings = image_mappings(self.info, image, self.plan)

    def _alone(self, item: EvalItem) -> bool:
        """Whether the item's inputs come from its picture alone, by per-pixel mapping."""
        image = item.image
        if image is None or image.raw is not None or item.others or self.ablation:
            return False
        shape = image.array.shape
        return shape[0] * shape[1] <= SPARSE_RESIZE_ABOVE and self._plain_alone  # image.raw None: plain mappings

    def _arrays(self, item: EvalItem) -> None:
        """The item's model inputs (and its mask variants'), one picture at a time."""
        image, info = item.image, self.info
        assert image is not None
        masks = {"mask": item.mask} if item.mask is not None else {}
        item.arrays, _frames = model_arrays(info, image, item.mappings, masks, item.others.get)
        if self.ablation:
            if item.mask is None:
                raise MaskviewerError("no mask to ablate (the ablation needs a mask per image)")
            from maskviewer.core.mask_feed import ablation_masks

            for v, m in ablation_masks(item.mask, ABLATION_SEED).items():
                item.variants[VARIANT_NAMES[v]] = model_arrays(
                    info, image, item.mappings, {"mask": m}, item.others.get)[0]


def _call_now(fn: Callable[[], Any]) -> Future:
    """A future holding what ``fn()`` gives (or raises), called now."""
    f: Future = Future()
    try:
        f.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - handed on to the future's reader
        f.set_exception(exc)
    return f


def _model_batch(group: list[EvalItem]) -> dict[str, np.ndarray]:
    """The group's model inputs with the batch axis: the arrays they were mapped in when the
    group is made of them whole and in order (no copy), else stacked."""
    stacks, j = [], 0
    while j < len(group):
        st = group[j].stacked
        if st is None or st[1] != 0:
            break
        n = len(next(iter(st[0].values())))
        part = group[j : j + n]
        if len(part) != n or any(it.stacked is None or it.stacked[0] is not st[0] or it.stacked[1] != k
                                 for k, it in enumerate(part)):
            break
        stacks.append(st[0])
        j += n
    if j == len(group) and stacks:
        return stacks[0] if len(stacks) == 1 else {k: np.concatenate([s[k] for s in stacks]) for k in stacks[0]}
    return {k: np.stack([it.arrays[k] for it in group]) for k in group[0].arrays}


def _guard(item: EvalItem, step: Callable[..., None], *args: Any) -> None:
    """Run one step of preparing ``item``; what goes wrong becomes its error message."""
    try:
        step(item, *args)
    except MaskviewerError as exc:
        item.error = str(exc)
    except OSError as exc:
        item.error = f"{exc.strerror or exc}"
    except MemoryError:
        item.image, item.arrays, item.variants = None, {}, {}
        item.error = "not enough memory to prepare this image for the model."


_preparer: Preparer | None = None


def _set_preparer(preparer: Preparer) -> None:
    global _preparer
    _preparer = preparer


def _prepare_chunk(entries: list[Entry], images: list[ImageData | None]) -> list[EvalItem]:
    """Entries read by the pool's preparer (in a worker process)."""
    assert _preparer is not None
    return _preparer.prepare_many(entries, images)


def _as_image(array: np.ndarray | None, entry: Entry) -> ImageData | None:
    """A picture the stream decoded, as :func:`~maskviewer.io.images.load_image` gives it."""
    if array is None:
        return None
    return ImageData(array, entry.image.path, 255.0)


class Evaluator:
    """Scores ``host``'s model on entries of ``index`` with ``plan``'s settings."""

    def __init__(self, host: Any, index: DatasetIndex, plan: Plan, settings: EvalSettings,
                 reader: PictureReader | None = None) -> None:
        from maskviewer.core.output_kinds import MAP, OutputKinds

        self.host, self.index, self.plan, self.settings = host, index, plan, settings
        self.reader = reader or PictureReader()
        self.kinds = OutputKinds()
        self.kinds.set_model(host.info)
        self.classes = plan.labels or index.classes
        names = [t.name for t in host.info.outputs]
        vector = [n for n in names if self.kinds.kind_of(n).kind != MAP]
        maps = [n for n in names if self.kinds.kind_of(n).kind == MAP]
        self.output = settings.output or (vector[0] if vector else None)
        self.map_output = settings.map_output or plan.binarise_output or (maps[0] if maps else None)
        if settings.ablation and (plan.mask_feed is None or plan.mask_feed.mode == "none"):
            raise MaskviewerError("The mask ablation needs the mask fed to the model: give --mask-mode.")
        self.preparer = Preparer(host.info, plan, settings.ablation, self.reader)
        #: read large data sets in worker processes (Python's decoding holds the GIL); off by
        #: default: a spawned worker imports the program's ``__main__`` again, which only a
        #: command with a main guard (``maskviewer evaluate``) can promise
        self.processes = False
        #: let the backend's input pipeline decode small PNG files (in C++ threads, ahead of the model)
        self.stream_pngs = True

    # -- running (on the calling thread) ----------------------------------------------------------

    def rows(self, entries: list[Entry], progress: Callable[[int, int], None] | None = None) -> Iterator[dict]:
        """A results row per entry, in order, a batch at a time (``progress`` may raise to stop).

        Small PNG files are decoded by the backend's input pipeline in its own threads
        (:mod:`maskviewer.inference.png_stream`); the rest of each entry is read in chunks by a
        pool — worker processes for a data set of at least :data:`PROCESS_MIN` entries that the
        stream does not decode, on a machine with more than one core (image decoding in Python
        holds the GIL), else threads — up to :data:`AHEAD` batches ahead of the model. The
        model runs a batch on its own thread while this one writes the rows of the batch
        before (not with patch rules, which call the model row by row).
        """
        size = max(1, self.settings.batch_size)
        starts = list(range(0, len(entries), size))
        stream = self._png_stream(entries)
        pool, workers = self._pool(len(entries), stream is None)
        chunk = _prepare_chunk if isinstance(pool, ProcessPoolExecutor) else self._prepare_chunk
        with pool:
            def submit(start: int) -> list[Future]:
                batch = entries[start : start + size]
                decoded = stream.take(start + len(batch)) if stream is not None else {}
                images = [_as_image(decoded.get(start + j), e) for j, e in enumerate(batch)]
                if all(images):  # decoded already: mapped here, in one piece (a thread would
                    return [_call_now(partial(self._prepare_chunk, batch, images))]  # only add GIL handovers)
                step = max(1, -(-len(batch) // workers))
                return [pool.submit(chunk, batch[i : i + step], images[i : i + step])
                        for i in range(0, len(batch), step)]

            # the model runs a batch on its own thread while this one makes the rows of the
            # batch before and prepares the next (patches call the model row by row: not then)
            runner = ThreadPoolExecutor(1, thread_name_prefix="evaluate-model") \
                if self.plan.patch_spec is None else None
            sent: deque = deque()  # batches handed to the model, oldest first, with their progress
            queue: deque = deque()  # batches being read, oldest first
            ahead = iter(starts)

            def top_up(n: int) -> None:
                while len(queue) < n and (start := next(ahead, None)) is not None:
                    queue.append(submit(start))

            try:
                top_up(1)  # the first batch alone: the model starts on it before the next are read
                for k in range(len(starts)):
                    items = [it for f in queue.popleft() for it in f.result()]
                    for it in items:
                        self.prepared(it)
                    sent.append((self._start(items, runner), starts[k] + len(items)))
                    top_up(AHEAD)
                    while len(sent) > (MODEL_AHEAD if runner is not None else 0):
                        started, done = sent.popleft()
                        yield from self._finish(started)
                        if progress is not None:
                            progress(done, len(entries))
                while sent:
                    started, done = sent.popleft()
                    yield from self._finish(started)
                    if progress is not None:
                        progress(done, len(entries))
            finally:
                if runner is not None:
                    runner.shutdown(wait=True, cancel_futures=True)

    def _png_stream(self, entries: list[Entry]) -> Any:
        """The backend's decoding of the entries' PNG files, ahead of use (None: none)."""
        if not self.stream_pngs:
            return None
        from maskviewer.inference.png_stream import png_stream

        picked = [(i, e.image.path) for i, e in enumerate(entries)
                  if e.image.row is None and e.image.corner is None and e.image.path.lower().endswith(".png")]
        return png_stream([i for i, _ in picked], [p for _, p in picked], self.settings.batch_size)

    def _prepare_chunk(self, entries: list[Entry], images: list[ImageData | None]) -> list[EvalItem]:
        return self.preparer.prepare_many(entries, images)

    def prepared(self, item: EvalItem) -> None:
        """Called on the running thread for each entry read, before its batch runs."""

    def _pool(self, n: int, may_fork: bool = True) -> tuple[Executor, int]:
        cores = os.cpu_count() or 1
        if self.processes and may_fork and n >= PROCESS_MIN and cores > 1:
            import multiprocessing

            workers = max(1, min(READERS, cores))
            return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_set_preparer, initargs=(self.preparer,)), workers
        workers = max(1, min(READERS, cores))
        return ThreadPoolExecutor(workers, thread_name_prefix="evaluate-read"), workers

    def run_batch(self, items: list[EvalItem]) -> list[dict]:
        """The rows of one prepared batch (entries of one input shape go through the model together)."""
        return self._finish(self._start(items, None))

    def _start(self, items: list[EvalItem], runner: Executor | None) -> tuple:
        """Send a prepared batch to the model (on ``runner``'s thread, or now); :meth:`_finish`
        makes its rows."""
        rows: dict[int, dict] = {}
        groups: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):
            if it.error:
                rows[i] = self._failed(it, it.error)
            else:
                groups.setdefault(it.shapes(), []).append(i)
        calls = []
        for idx in groups.values():
            group = [items[i] for i in idx]
            call = partial(self._predict_group, group)
            calls.append((idx, group, runner.submit(call) if runner is not None else _call_now(call)))
        return items, rows, calls

    def _predict_group(self, group: list[EvalItem]) -> tuple[dict, dict]:
        """The model's outputs for a group of one input shape, and for its mask variants."""
        outputs = self.host.predict(_model_batch(group))
        variants = {v: self.host.predict({k: np.stack([it.variants[v][k] for it in group])
                                          for k in group[0].variants[v]})
                    for v in (group[0].variants if self.settings.ablation else ())}
        return outputs, variants

    def _finish(self, started: tuple) -> list[dict]:
        items, rows, calls = started
        for idx, group, call in calls:
            try:
                outputs, variants = call.result()
            except MaskviewerError as exc:
                rows.update({i: self._failed(items[i], str(exc)) for i in idx})
                continue
            answers = self._answers(group, outputs)
            ablated = {v: self._answers(group, outs) for v, outs in variants.items()}
            maps = self.map_output is not None
            for j, i in enumerate(idx):
                it = items[i]
                try:  # the outputs themselves are read only for a map scored against a reference
                    rows[i] = self.row(it, {n: v[j] for n, v in outputs.items()} if maps and it.reference is not None
                                       else {}, answers[j], {v: a[j] for v, a in ablated.items()})
                except MaskviewerError as exc:
                    rows[i] = self._failed(items[i], str(exc))
        return [rows[i] for i in range(len(items))]

    def _answers(self, group: list[EvalItem], outputs: dict[str, np.ndarray]) -> list[dict]:
        """What the answered output says of each item of a group, read by its kind."""
        if self.output is None:
            return [{} for _ in group]
        values = outputs[self.output]
        kind = self.kinds.kind_of(self.output, values[0]).kind
        labels = [it.entry.label for it in group]
        return [{"kind": kind, **a} for a in ev.answer_rows(kind, values, labels, self.classes)]

    def _failed(self, it: EvalItem, message: str) -> dict:
        return {**self._base(it.entry), "error_message": message}

    def _base(self, entry: Entry) -> dict:
        return {"key": entry.key, "source": entry.image.describe(), "label": entry.label or ""}

    def row(self, it: EvalItem, outputs: dict[str, np.ndarray], answer: dict, ablated: dict[str, dict]) -> dict:
        """One entry's row from its outputs (read for a map scored against the entry's
        reference; may be empty otherwise), its answer (:meth:`_answers`) and its mask
        variants' answers."""
        row = self._base(it.entry)
        row.update(answer)
        for v, a in ablated.items():
            for key in ("pred", "value", "correct", "abs_error", "confidence"):
                if key in a:
                    row[f"ablation_{v}_{key}"] = a[key]
        if self.map_output is not None and it.reference is not None:
            row.update(self._binary(it, outputs[self.map_output]))
        if self.plan.patch_spec is not None and self.output is not None:
            try:
                row.update(self._patches(it, it.entry.label))
            except MaskviewerError as exc:  # the image's own answer stands; its patches say why not
                row["patch_error"] = str(exc)
        return row

    def _binary(self, it: EvalItem, value: np.ndarray) -> dict:
        from maskviewer.core.metrics import resize_nearest
        from maskviewer.core.threshold import ThresholdCache

        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 3:
            v = v[:, :, self.plan.class_index or 0]
        ref = it.reference
        if ref.shape != v.shape:
            ref = resize_nearest(ref, v.shape)
        method, t = self.plan.threshold or ("value", 0.5)
        if method != "value":
            t = ThresholdCache(v.astype(np.float32), display=False).threshold(method)
        return ev.binary_row(v, ref, float(t), self.plan.invert)

    def _patches(self, it: EvalItem, label: str | None) -> dict:
        from maskviewer.core.patches import (
            COMBINE_BY_KIND,
            as_values,
            combine_values,
            kind_family,
            make_grid,
        )
        from maskviewer.inference.patch_runner import check_patch_fits, plan_feed, run_patches

        image = it.image
        assert image is not None
        grid = make_grid(self.plan.patch_spec, image.height, image.width)
        feed = plan_feed(self.host.info, it.mappings)
        check_patch_fits(image, grid, feed)
        run = run_patches(self.host.predict, image, grid, feed, other_images=it.others or None)
        scores = np.asarray(run.outputs[self.output])
        kind = self.kinds.kind_of(self.output, scores[0]).kind
        family = kind_family(kind)
        values, _note = as_values(scores, kind)
        out: dict[str, Any] = {}
        for rule in COMBINE_BY_KIND[family]:
            combined = combine_values(values, rule, family)
            answer = (ev.value_row(combined.scores, label) if family == "values"
                      else ev.class_row(ok_probabilities(), combined.scores, label, self.classes))
            for key in ("pred", "value", "correct", "abs_error"):
                if key in answer:
                    out[f"patch_{rule}_{key}"] = answer[key]
        return out


def ok_probabilities() -> str:
    """Combined patch scores are probabilities already: read them as a softmax output."""
    from maskviewer.core.output_kinds import SOFTMAX

    return SOFTMAX


def evaluate(evaluator: Evaluator, entries: list[Entry], progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Every row (for data sets that fit in memory as rows: a row is a few hundred bytes)."""
    return list(evaluator.rows(entries, progress))
