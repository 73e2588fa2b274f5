"""Running an export: images streamed through the model in batches, three stages at once.

A batch is loaded and prepared on a helper thread while the model runs the previous one on
this thread, and its files are written on another thread while the next one runs (array work,
PNG encoding and file system calls release the GIL). Entries reach the manifest in image order
and at most two batches are in flight, so memory stays bounded for any number of images.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.cli.export_items import (
    CamExport,
    Prepared,
    activation_items,
    binary_items,
    cam_items,
    mask_item,
    patch_items,
    prediction_items,
    prepare_one,
)
from maskviewer.cli.export_plan import Plan
from maskviewer.cli.export_report import ProgressBar
from maskviewer.core.errors import MaskviewerError


def _batches(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def _in_image_order(prepared: list, written: list, jobs: list, owners: list[int]) -> tuple[list, list, list[int]]:
    """A batch's images (and their jobs) in the order of the image list, whatever input-shape
    groups they went through the model in: stacked rows and manifest entries come out alike
    however the list is cut into batches (a resumed run equals an uninterrupted one)."""
    rank = {id(it): n for n, it in enumerate(prepared)}
    order = sorted(range(len(written)), key=lambda i: rank[id(written[i])])
    new_index = {old: new for new, old in enumerate(order)}
    job_order = sorted(range(len(jobs)), key=lambda j: new_index[owners[j]])  # stable within an image
    return ([written[i] for i in order], [jobs[j] for j in job_order],
            [new_index[owners[j]] for j in job_order])


def run_export(
    args: argparse.Namespace,
    paths: list[str],
    stems: dict[str, str],
    host: Any,
    plan: Plan,
    writer: Any,
    manifest: Any,
    report: Callable[[str], None],
    progress: ProgressBar | None = None,
) -> tuple[int, int]:
    """Export every image of ``paths``; returns ``(images done, images failed)``.

    Parameters
    ----------
    args : argparse.Namespace
        The ``maskviewer export`` options (batch size, mask and reference folders).
    paths : list of str
        The images, in the order their entries reach the manifest.
    stems : dict
        Image path -> the folder its files go to.
    host, plan, writer, manifest
        The loaded model, what to compute, the artifact writer and the manifest.
    report : callable
        Shows a line (each failed image is reported as it fails).
    progress : ProgressBar, optional
        Updated after every batch.
    """
    return BatchRunner(args, stems, host, plan, writer, manifest, report).run(paths, progress)


class BatchRunner:
    """One export run's batches: counts, failures, and the batches whose files are being written."""

    def __init__(
        self, args: argparse.Namespace, stems: dict[str, str], host: Any, plan: Plan,
        writer: Any, manifest: Any, report: Callable[[str], None],
    ) -> None:
        from maskviewer.inference.batch_maps import BatchMapper
        from maskviewer.inference.probe import Reduction, get_probe

        self.args, self.stems, self.host, self.plan = args, stems, host, plan
        self.writer, self.manifest, self.report = writer, manifest, report
        self.batch_size = max(1, args.batch_size)
        self.probe = get_probe(host) if (plan.activations or plan.cam) else None
        self.mapper = None
        # the CAMs' pass gives the outputs too (none at all when nothing uses them); the
        # mapper runs only for activations, or for the outputs when there are no CAMs
        wants_outputs = plan.predictions or plan.threshold is not None
        self.cams = CamExport(host, plan, wants_outputs and not plan.activations) if plan.cam else None
        if host.info.probe_supported and (plan.activations or self.cams is None):
            r = plan.reduce
            self.mapper = BatchMapper(host, plan.layers if plan.activations else [],
                                      Reduction(r.method, r.k, r.channel))
        from maskviewer.cli.export_attention import AttentionExport

        transformer = plan.transformer
        self.attention = AttentionExport(host, transformer) if transformer is not None and not transformer.empty else None
        self.done = self.failed = 0
        self.pad = False  # pad short batches to the full size (set by run)
        self.in_flight: deque[tuple[list[Prepared], list[int], Future]] = deque()

    def run(self, paths: list[str], progress: ProgressBar | None = None) -> tuple[int, int]:
        """Export ``paths``; returns ``(images done, images failed)``."""
        # a short last batch is padded to the full size only when there are full ones: the
        # traced pass is reused instead of traced again for a new batch shape
        self.pad = (self.mapper is not None or self.cams is not None) and len(paths) > self.args.batch_size
        batches = list(_batches(paths, self.batch_size))
        with ThreadPoolExecutor(1, thread_name_prefix="export-prepare") as prep_pool, \
                ThreadPoolExecutor(1, thread_name_prefix="export-write") as write_pool:
            pending = prep_pool.submit(self.prepare, batches[0]) if batches else None
            for k in range(len(batches)):
                assert pending is not None
                prepared = pending.result()
                if k + 1 < len(batches):
                    pending = prep_pool.submit(self.prepare, batches[k + 1])
                self.run_batch(prepared, write_pool)
                self.collect(keep=1)  # the previous batch's files are done
                if progress is not None:
                    progress.update(self.done + self.failed, self.failed)
            self.collect(keep=0)
        return self.done, self.failed

    def prepare(self, batch: list[str]) -> list[Prepared]:
        """Load a batch's images and build their inputs (on the preparing thread)."""
        info, plan, args = self.host.info, self.plan, self.args
        return [prepare_one(p, self.stems[p], info, plan, args.mask, args.reference) for p in batch]

    def fail(self, path: str, message: str) -> None:
        """Count and report a failed image, and list it in the manifest."""
        self.failed += 1  # (on this thread only: the writing thread returns its errors)
        self.manifest.add_failure(path, message)
        shown = message if message.startswith((path, Path(path).name)) else f"{path}: {message}"
        self.report(f"maskviewer export: {shown}")

    def run_batch(self, prepared: list[Prepared], write_pool: ThreadPoolExecutor) -> None:
        """Run the model on a prepared batch and hand its files to the writing thread."""
        from maskviewer.io.export import naming

        groups: dict[tuple, list[Prepared]] = {}
        for item in prepared:
            if item.error:
                self.fail(item.path, item.error)
            else:  # images whose inputs differ in shape go through the model apart
                groups.setdefault(item.shapes(), []).append(item)
        written: list[Prepared] = []
        jobs: list[tuple] = []
        owners: list[int] = []  # per job, its image's index in ``written``
        for group in groups.values():
            try:
                maps, outputs = self.call_model(group)
            except MaskviewerError as exc:
                for it in group:
                    self.fail(it.path, str(exc))
                continue
            for i, it in enumerate(group):
                try:
                    exports = self.items(it, maps[i], {n: v[i] for n, v in outputs.items()})
                except MaskviewerError as exc:
                    self.fail(it.path, str(exc))
                    continue
                except MemoryError:  # this image fails, the others are still exported
                    self.fail(it.path, "not enough memory to make its maps.")
                    continue
                jobs.extend((e, it.image, naming.prefixed(it.stem, naming.unique_stem(e, self.plan.tokens)))
                            for e in exports)
                owners.extend([len(written)] * len(exports))
                written.append(it)
        if written:
            written, jobs, owners = _in_image_order(prepared, written, jobs, owners)
            self.in_flight.append((written, owners, write_pool.submit(self.writer.write_batch, jobs)))

    def call_model(self, group: list[Prepared]) -> tuple[list[dict], dict[str, np.ndarray]]:
        """``(per-image layer maps, batched outputs)`` for images of one input shape."""
        arrays = {name: np.stack([it.arrays[name] for it in group]) for name in group[0].arrays}
        if self.mapper is None and self.cams is None:
            return [{} for _ in group], self.host.predict(arrays)
        size = self.args.batch_size
        if self.pad and 0 < len(group) < size:  # the padding rows' results are not used
            arrays = {
                k: np.concatenate([v, np.zeros((size - len(v), *v.shape[1:]), v.dtype)])
                for k, v in arrays.items()
            }
        outputs = self.cams.run(group, arrays) if self.cams is not None else {}
        if self.mapper is None:
            return [{} for _ in group], outputs
        return self.mapper.run(arrays)

    def items(self, it: Prepared, maps: dict, outputs: dict[str, np.ndarray]) -> list:
        """Every export item the plan asks for, for one image."""
        plan = self.plan
        exports = []
        if plan.activations:
            from maskviewer.cli.export_attention import annotate_tokens

            exports += activation_items(it, maps, plan)
            annotate_tokens(exports, maps)
        if self.attention is not None:
            exports += self.attention.items(it, plan.output, plan.class_index)
        if plan.cam:
            exports += cam_items(it, plan)
            if plan.faithfulness:
                from maskviewer.cli.export_faithfulness import add_faithfulness

                add_faithfulness(exports, it, self.host, plan)
        if plan.predictions:
            exports += prediction_items(it, outputs, plan.labels, self.host.info)
        if plan.patch_spec is not None:
            exports += patch_items(it, self.host, plan)
        if plan.threshold is not None:
            exports += binary_items(it, outputs, plan)
        exports += mask_item(it, plan)
        return exports

    def collect(self, keep: int) -> None:
        """Wait for written batches until ``keep`` remain; their entries go to the manifest."""
        while len(self.in_flight) > keep:
            items, owners, future = self.in_flight.popleft()
            per_image: list[list] = [[] for _ in items]
            for owner, result in zip(owners, future.result(), strict=True):
                per_image[owner].append(result)
            for it, entries in zip(items, per_image, strict=True):
                errors = [e for e in entries if isinstance(e, BaseException)]
                if errors:
                    self.fail(it.path, f"writing its files failed: {errors[0]}")
                    continue
                self.manifest.add_image(it.path, entries)
                self.done += 1
            self.manifest.commit()  # the batch's images journalled, once their files are written
