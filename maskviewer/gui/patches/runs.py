"""The Patches tool's worker jobs, without Qt: each returns ``(snapshot, ...)``.

A job runs on the inference thread with everything it needs taken along when it is made, so
later edits in the GUI cannot reach it; the :class:`Snapshot` says which settings it was made
for, so the model can drop a result that no longer matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maskviewer.core.image import ImageData
from maskviewer.core.patches import PatchGrid, grey_value

KIND = "patches"
KIND_OCCLUSION = "patches_occlusion"
KIND_CURRENT = "patch_current"

Job = Callable[[Any], Any]


@dataclass
class Snapshot:
    """What a run was made from, to drop results that no longer match the settings."""

    epoch: int
    grid: PatchGrid


def current_patch_job(
    image: ImageData, grid: PatchGrid, feed: Any, extra: dict, snap: Snapshot, index: int
) -> Job:
    """Run patch ``index`` alone; the job returns ``(snap, index, {output: array})``."""

    def job(ctx):
        from maskviewer.inference.patch_runner import run_patches
        from maskviewer.io.images import load_image

        run = run_patches(
            ctx.host.predict, image, grid, feed, batch_size=1, other_images=extra, load=load_image,
            indices=[index],
        )
        return snap, index, {k: v[0] for k, v in run.outputs.items()}

    return job


def all_patches_job(image: ImageData, grid: PatchGrid, feed: Any, extra: dict, snap: Snapshot) -> Job:
    """Run every patch in batches; the job returns ``(snap, PatchRun)``."""

    def job(ctx):
        from maskviewer.inference.patch_runner import run_patches
        from maskviewer.io.images import load_image

        ctx.progress(0, grid.count)
        run = run_patches(
            ctx.host.predict, image, grid, feed, progress=ctx.progress, other_images=extra, load=load_image
        )
        return snap, run

    return job


def occlusion_job(image: ImageData, grid: PatchGrid, feed: Any, extra: dict, snap: Snapshot) -> Job:
    """Grey out each patch in turn and run the whole image; returns ``(snap, OcclusionRun)``."""
    fill = grey_value(image)

    def job(ctx):
        from maskviewer.inference.patch_runner import run_occlusion
        from maskviewer.io.images import load_image

        ctx.progress(0, grid.count + 1)
        run = run_occlusion(
            ctx.host.predict, image, grid, feed, fill, progress=ctx.progress,
            other_images=extra, load=load_image,
        )
        return snap, run

    return job
