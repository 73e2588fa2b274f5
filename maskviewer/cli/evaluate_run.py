"""Running a model over a data set: entries streamed in batches, one results row per entry.

A helper thread reads and prepares the next batch (pictures, masks, model inputs) while the
model runs this one, so the model is not kept waiting for files; at most two batches are in
memory, whatever the size of the data set. Each entry's row is built by
:mod:`maskviewer.core.evaluation`; an entry that cannot be read or run gets a row with its
``error_message`` and the others go on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.cli.export_items import image_mappings, model_arrays
from maskviewer.cli.export_plan import Plan
from maskviewer.core import evaluation as ev
from maskviewer.core.dataset import DatasetIndex, Entry
from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.io.dataset import PictureReader

#: the mask variants an ablation compares (``painted`` is the entry's own mask, named "mask")
VARIANT_NAMES = {"painted": "mask", "zeros": "none", "ones": "ones", "random": "random", "inverted": "inverted"}
ABLATION_SEED = 0
#: threads reading entries, and how many batches they read ahead of the model
READERS = 4
AHEAD = 2
#: data sets at least this large are read by worker processes (starting them takes a second)
PROCESS_MIN = 2000


@dataclass
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

    def shapes(self) -> tuple:
        return tuple((k, v.shape) for k, v in self.arrays.items())


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

    def __getstate__(self) -> dict:
        return {"info": self.info, "plan": self.plan, "ablation": self.ablation}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["info"], state["plan"], state["ablation"])

    def prepare(self, entry: Entry) -> EvalItem:
        """Read one entry's pictures and build its model inputs; errors are kept in the item."""
        item = EvalItem(entry)
        reader, info = self.reader, self.info
        try:
            item.image = image = reader.picture(entry.image)
            shape = (image.height, image.width)
            if entry.mask is not None:
                item.mask = reader.mask(entry.mask, shape)
            if entry.reference is not None:
                item.reference = reader.reference(entry.reference)
            item.others = {name: reader.picture(src) for name, src in entry.inputs.items()}
            item.mappings = image_mappings(info, image, self.plan)
            masks = {"mask": item.mask} if item.mask is not None else {}
            item.arrays, _frames = model_arrays(info, image, item.mappings, masks, item.others.get)
            if self.ablation:
                if item.mask is None:
                    raise MaskviewerError("no mask to ablate (the ablation needs a mask per image)")
                from maskviewer.core.mask_feed import ablation_masks

                for v, m in ablation_masks(item.mask, ABLATION_SEED).items():
                    item.variants[VARIANT_NAMES[v]] = model_arrays(
                        info, image, item.mappings, {"mask": m}, item.others.get)[0]
        except MaskviewerError as exc:
            item.error = str(exc)
        except OSError as exc:
            item.error = f"{exc.strerror or exc}"
        except MemoryError:
            item.image, item.arrays, item.variants = None, {}, {}
            item.error = "not enough memory to prepare this image for the model."
        return item


_preparer: Preparer | None = None


def _set_preparer(preparer: Preparer) -> None:
    global _preparer
    _preparer = preparer


def _prepare_chunk(entries: list[Entry]) -> list[EvalItem]:
    """Entries read by the pool's preparer (in a worker process, or a thread of this one)."""
    assert _preparer is not None
    return [_preparer.prepare(e) for e in entries]


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

    def prepare(self, entry: Entry) -> EvalItem:
        """Read one entry's pictures and build its model inputs (see :class:`Preparer`)."""
        return self.preparer.prepare(entry)

    # -- running (on the calling thread) ----------------------------------------------------------

    def rows(self, entries: list[Entry], progress: Callable[[int, int], None] | None = None) -> Iterator[dict]:
        """A results row per entry, in order, a batch at a time (``progress`` may raise to stop).

        Entries are read in chunks by a pool — worker processes for a data set of at least
        :data:`PROCESS_MIN` entries on a machine with more than one core (image decoding in
        Python holds the GIL), else threads — up to :data:`AHEAD` batches ahead of the model,
        so at most that many batches are in memory.
        """
        size = max(1, self.settings.batch_size)
        batches = [entries[i : i + size] for i in range(0, len(entries), size)]
        done = 0
        pool, workers = self._pool(len(entries))
        chunk = _prepare_chunk if isinstance(pool, ProcessPoolExecutor) else self._prepare_chunk
        with pool:
            def submit(batch: list[Entry]) -> list[Future]:
                step = max(1, -(-len(batch) // workers))
                return [pool.submit(chunk, batch[i : i + step]) for i in range(0, len(batch), step)]

            queue = deque(submit(b) for b in batches[:AHEAD])
            for k in range(len(batches)):
                items = [it for f in queue.popleft() for it in f.result()]
                for it in items:
                    self.prepared(it)
                if k + AHEAD < len(batches):
                    queue.append(submit(batches[k + AHEAD]))
                yield from self.run_batch(items)
                done += len(items)
                if progress is not None:
                    progress(done, len(entries))

    def _prepare_chunk(self, entries: list[Entry]) -> list[EvalItem]:
        return [self.prepare(e) for e in entries]

    def prepared(self, item: EvalItem) -> None:
        """Called on the running thread for each entry read, before its batch runs."""

    def _pool(self, n: int) -> tuple[Executor, int]:
        cores = os.cpu_count() or 1
        if self.processes and n >= PROCESS_MIN and cores > 1:
            import multiprocessing

            workers = max(1, min(READERS, cores))
            return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_set_preparer, initargs=(self.preparer,)), workers
        workers = max(1, min(READERS, cores))
        return ThreadPoolExecutor(workers, thread_name_prefix="evaluate-read"), workers

    def run_batch(self, items: list[EvalItem]) -> list[dict]:
        """The rows of one prepared batch (entries of one input shape go through the model together)."""
        rows: dict[int, dict] = {}
        groups: dict[tuple, list[int]] = {}
        for i, it in enumerate(items):
            if it.error:
                rows[i] = self._failed(it, it.error)
            else:
                groups.setdefault(it.shapes(), []).append(i)
        for idx in groups.values():
            group = [items[i] for i in idx]
            try:
                outputs = self._predict([it.arrays for it in group])
                variants = {v: self._predict([it.variants[v] for it in group])
                            for v in (group[0].variants if self.settings.ablation else ())}
            except MaskviewerError as exc:
                rows.update({i: self._failed(items[i], str(exc)) for i in idx})
                continue
            for j, i in enumerate(idx):
                try:
                    rows[i] = self.row(items[i], {n: v[j] for n, v in outputs.items()},
                                       {v: {n: o[j] for n, o in outs.items()} for v, outs in variants.items()})
                except MaskviewerError as exc:
                    rows[i] = self._failed(items[i], str(exc))
        return [rows[i] for i in range(len(items))]

    def _predict(self, arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return self.host.predict({k: np.stack([a[k] for a in arrays]) for k in arrays[0]})

    def _failed(self, it: EvalItem, message: str) -> dict:
        return {**self._base(it.entry), "error_message": message}

    def _base(self, entry: Entry) -> dict:
        return {"key": entry.key, "source": entry.image.describe(), "label": entry.label or ""}

    def row(self, it: EvalItem, outputs: dict[str, np.ndarray], variants: dict[str, dict]) -> dict:
        """One entry's row from its outputs (and its mask variants' outputs)."""
        row = self._base(it.entry)
        label = it.entry.label
        if self.output is not None:
            kind = self.kinds.kind_of(self.output, outputs[self.output]).kind
            row["kind"] = kind
            row.update(ev.answer_row(kind, outputs[self.output], label, self.classes))
            for v, outs in variants.items():
                answer = ev.answer_row(kind, outs[self.output], label, self.classes)
                for key in ("pred", "value", "correct", "abs_error", "confidence"):
                    if key in answer:
                        row[f"ablation_{v}_{key}"] = answer[key]
        if self.map_output is not None and it.reference is not None:
            row.update(self._binary(it, outputs[self.map_output]))
        if self.plan.patch_spec is not None and self.output is not None:
            try:
                row.update(self._patches(it, label))
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
