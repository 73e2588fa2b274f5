"""Running every patch of an image (and every occluded image) through the model in batches.

Runs on the inference thread. The model is reached only through a ``predict(arrays)``
callable (``ModelHost.predict``), so this module imports no backend itself. Patches become
model inputs through :func:`maskviewer.core.patches.prepare_patches`, which equals
:func:`maskviewer.core.mapping.prepare_input` applied to each patch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.errors import InputMappingError, MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, is_image_input, prepare_input, spatial_shape
from maskviewer.core.model_info import ModelInfo
from maskviewer.core.patches import (
    PatchGrid,
    PatchSettingsError,
    extract_patches,
    occlude,
    patch_input,
    prepare_patches,
)

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Progress = Callable[[int, int], None]

#: bytes of prepared model input per batch: large enough that per-call overhead vanishes,
#: small enough that a 224² RGB model still reports progress every few dozen patches
BATCH_BYTES = 32 << 20


@dataclass
class PatchFeed:
    """Which model inputs a patch goes into, and what the other inputs get.

    Attributes
    ----------
    patch_inputs : dict
        Input name -> ``(mapping, input_shape)`` for the inputs fed from the current image
        (each gets the patch, prepared with its own mapping).
    other_inputs : dict
        Input name -> ``(mapping, input_shape)`` fed from another file: the same array for
        every patch.
    """

    patch_inputs: dict[str, tuple[InputMapping, tuple]] = field(default_factory=dict)
    other_inputs: dict[str, tuple[InputMapping, tuple]] = field(default_factory=dict)


def plan_feed(info: ModelInfo, mappings: dict[str, InputMapping]) -> PatchFeed:
    """Decide how patches feed ``info``'s inputs.

    Raises
    ------
    PatchSettingsError
        The model has an input that is not an image, or no input takes the current image.
    """
    feed = PatchFeed()
    for spec in info.inputs:
        if not is_image_input(spec.shape):
            raise PatchSettingsError(
                f"The model input {spec.name!r} {spec.shape_text()} is not an image, so a patch "
                "cannot be fed to it. Patches work with models whose inputs are images (H, W, C)."
            )
        m = mappings.get(spec.name) or InputMapping()
        if m.source == "image":
            feed.patch_inputs[spec.name] = (m, spec.shape)
        elif m.source.startswith("file:"):
            feed.other_inputs[spec.name] = (m, spec.shape)
        else:
            raise PatchSettingsError(
                f"The model input {spec.name!r} is fed from {m.source!r}, which patches cannot "
                "replace; set its source to the image in the Input panel."
            )
    if not feed.patch_inputs:
        raise PatchSettingsError(
            "No model input takes the current image (all come from other files), so there is "
            "nothing to cut into patches. Set an input's source to the image in the Input panel."
        )
    return feed


def check_patch_fits(image: ImageData, grid: PatchGrid, feed: PatchFeed) -> None:
    """Prepare the first patch for every patch input, to fail early with a clear message.

    Raises
    ------
    PatchSettingsError
        The patch cannot become the input (wrong size with resize "none", channels...).
    """
    patch = extract_patches(image.array, grid, [0])[0]
    for name, (mapping, shape) in feed.patch_inputs.items():
        try:
            patch_input(patch, image.value_max, mapping, shape)
        except InputMappingError as exc:
            kh, kw = grid.spec.size
            raise PatchSettingsError(
                f"A {kh}×{kw} patch cannot feed the model input {name!r} {tuple(shape)}: "
                f"{str(exc).replace('the image is', 'the patch is')}"
            ) from exc


def batch_size_for(shapes: list[tuple], budget: int | None = None) -> int:
    """Patches per model call so that one batch of prepared inputs takes about ``budget`` bytes.

    The default budget is :data:`BATCH_BYTES` (read at call time).
    """
    budget = BATCH_BYTES if budget is None else budget
    per_sample = 0
    for shape in shapes:
        per_sample += 4 * int(np.prod([d for d in shape if d is not None], dtype=np.int64))
    return max(1, budget // max(per_sample, 1))


def _input_shape(shape: tuple, kh: int, kw: int) -> tuple:
    h, w, c = spatial_shape(shape)
    out = (kh if h is None else h, kw if w is None else w)
    return out if c is None else out + (c,)


def _fixed_arrays(
    feed: PatchFeed, images: dict[str, ImageData], load: Callable[[str], ImageData] | None
) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (mapping, shape) in feed.other_inputs.items():
        path = mapping.source[5:]
        img = images.get(path)
        if img is None:
            if load is None:
                raise MaskviewerError(f"Input {name!r}: the image {path} is not available.")
            img = load(path)
        arrays[name] = prepare_input(img, mapping, shape)[0][None]
    return arrays


@dataclass
class PatchRun:
    """All patches' model outputs.

    Attributes
    ----------
    grid : PatchGrid
    outputs : dict
        Output name -> ``(N, ...)`` per patch.
    seconds : float
        Wall time of the whole run (preparation and model calls).
    batch_size : int
    """

    grid: PatchGrid
    outputs: dict[str, np.ndarray]
    seconds: float = 0.0
    batch_size: int = 0


def _run_batches(
    predict: Predict,
    count: int,
    make_batch: Callable[[np.ndarray], dict[str, np.ndarray]],
    fixed: dict[str, np.ndarray],
    batch_size: int,
    progress: Progress | None,
    done_before: int = 0,
    total: int | None = None,
) -> dict[str, np.ndarray]:
    total = count if total is None else total
    pieces: dict[str, list[np.ndarray]] = {}
    batches = [np.arange(s, min(s + batch_size, count)) for s in range(0, count, batch_size)]
    if len(batches) > 1 and batch_size >= 16:
        # a small first batch: its preparation is the only one not hidden behind a model call
        first = batches.pop(0)
        cut = batch_size // 8
        batches[:0] = [first[:cut], first[cut:]]

    def run(idx: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        for name, arr in fixed.items():
            arrays[name] = np.broadcast_to(arr, (len(idx),) + arr.shape[1:])
        for name, value in predict(arrays).items():
            pieces.setdefault(name, []).append(np.asarray(value))
        if progress is not None:
            progress(done_before + int(idx[-1]) + 1, total)  # may raise Cancelled

    if len(batches) == 1:
        run(batches[0], make_batch(batches[0]))
    elif batches:
        # prepare batch k + 1 (numpy, releases the GIL) while the model runs batch k; the
        # model itself is only ever called from this thread
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskviewer-patch-prep") as pool:
            pending = pool.submit(make_batch, batches[0])
            for k, idx in enumerate(batches):
                arrays = pending.result()
                if k + 1 < len(batches):
                    pending = pool.submit(make_batch, batches[k + 1])
                run(idx, arrays)
    return {name: np.concatenate(parts, axis=0) for name, parts in pieces.items()}


def run_patches(
    predict: Predict,
    image: ImageData,
    grid: PatchGrid,
    feed: PatchFeed,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    other_images: dict[str, ImageData] | None = None,
    load: Callable[[str], ImageData] | None = None,
    indices: list[int] | np.ndarray | None = None,
) -> PatchRun:
    """Run every patch of ``image`` through the model in batches.

    Parameters
    ----------
    predict : callable
        ``predict(arrays) -> outputs`` on batched named inputs (``ModelHost.predict``).
    image : ImageData
    grid : PatchGrid
    feed : PatchFeed
        From :func:`plan_feed`.
    batch_size : int, optional
        Patches per model call; by default about :data:`BATCH_BYTES` of input per call.
    progress : callable, optional
        ``progress(done, total)`` after each batch; may raise to cancel.
    other_images, load
        Images for inputs fed from other files (by path), or a loader for them.
    indices : array-like of int, optional
        Run only these patches (outputs in this order); default all.
    """
    t0 = time.perf_counter()
    kh, kw = grid.spec.size
    if batch_size is None:
        batch_size = batch_size_for([_input_shape(s, kh, kw) for _m, s in feed.patch_inputs.values()])
    fixed = _fixed_arrays(feed, other_images or {}, load)

    which = np.arange(grid.count) if indices is None else np.asarray(indices, dtype=np.int64)

    def make_batch(idx: np.ndarray) -> dict[str, np.ndarray]:
        patches = extract_patches(image.array, grid, which[idx])
        return {
            name: prepare_patches(patches, image.value_max, mapping, shape)
            for name, (mapping, shape) in feed.patch_inputs.items()
        }

    outputs = _run_batches(predict, len(which), make_batch, fixed, batch_size, progress)
    return PatchRun(grid, outputs, time.perf_counter() - t0, batch_size)


@dataclass
class OcclusionRun:
    """Model outputs for the whole image and for the image with each patch greyed out.

    Attributes
    ----------
    base : dict
        Output name -> ``(...)`` for the unoccluded image.
    occluded : dict
        Output name -> ``(N, ...)``: patch ``i`` greyed out.
    fill : float
        The grey value used, in the image's units.
    """

    grid: PatchGrid
    base: dict[str, np.ndarray]
    occluded: dict[str, np.ndarray]
    fill: float
    seconds: float = 0.0


def run_occlusion(
    predict: Predict,
    image: ImageData,
    grid: PatchGrid,
    feed: PatchFeed,
    fill: float,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    other_images: dict[str, ImageData] | None = None,
    load: Callable[[str], ImageData] | None = None,
) -> OcclusionRun:
    """Run the image with each patch's rectangle set to ``fill`` (and once unoccluded).

    The occluded images go through the same input mapping as the image itself; the drop in a
    class score is ``base - occluded``.
    """
    t0 = time.perf_counter()
    shapes = [s for _m, s in feed.patch_inputs.values()]
    if batch_size is None:
        batch_size = batch_size_for([_input_shape(s, image.height, image.width) for s in shapes])
        # each occluded image is a whole copy before it is mapped to the input: on a large
        # image the copies, not the model inputs, bound the batch (one at least)
        batch_size = min(batch_size, max(1, BATCH_BYTES // max(1, image.array.nbytes)))
    fixed = _fixed_arrays(feed, other_images or {}, load)
    total = grid.count + 1

    def prepare(stack: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: prepare_patches(stack, image.value_max, mapping, shape)
            for name, (mapping, shape) in feed.patch_inputs.items()
        }

    base = _run_batches(
        predict, 1, lambda _idx: prepare(image.array[None]), fixed, 1, progress, 0, total
    )

    def make_batch(idx: np.ndarray) -> dict[str, np.ndarray]:
        stack = np.stack([occlude(image.array, grid, int(i), fill) for i in idx])
        return prepare(stack)

    occluded = _run_batches(predict, grid.count, make_batch, fixed, batch_size, progress, 1, total)
    return OcclusionRun(
        grid, {k: v[0] for k, v in base.items()}, occluded, fill, time.perf_counter() - t0
    )
