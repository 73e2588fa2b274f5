"""``maskviewer export IMAGE... --model MODEL --out DIR``: the window's views, headless, for folders.

No Qt anywhere here, and TensorFlow only through :mod:`maskviewer.inference` (imported after
the arguments and the output folder have been checked, so mistakes are reported in a second).
The command's jobs live beside it: the options (:mod:`~maskviewer.cli.export_options`), the
plan (:mod:`~maskviewer.cli.export_plan`), one image's items
(:mod:`~maskviewer.cli.export_items`), the batches (:mod:`~maskviewer.cli.export_run`) and
the progress and manifest header (:mod:`~maskviewer.cli.export_report`).

Exit codes: 0 everything exported; 1 some images failed (each reported on stderr, the others
exported); 2 nothing was done (bad arguments, unwritable folder, unknown layer, model refused).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskviewer.cli.args import UsageError, check_trust, load_model, say
from maskviewer.cli.export_options import (
    build_parser,
    find_images,
    image_stems,
    parse_reduce,
    parse_shard,
    parse_threshold,
    shard_slice,
)
from maskviewer.cli.export_plan import Plan, make_plan
from maskviewer.cli.export_report import ProgressBar, manifest_header, summary
from maskviewer.cli.export_run import run_export
from maskviewer.core.errors import MaskviewerError

__all__ = ["export_main", "build_parser", "run_export"]


@dataclass
class Setup:
    """What the checked arguments decided before the model is loaded."""

    style: Any  # ExportStyle
    shard: tuple[int, int] | None
    all_paths: list[str]  # every image found, sorted
    paths: list[str]  # this shard's images
    stems: dict[str, str]  # image -> its folder, the same in every shard
    out: Path
    manifest_name: str

    @property
    def stack_dir(self) -> str:
        """Where this shard's stacked arrays go, under the output folder."""
        shard = self.shard
        return "arrays" if shard is None else f"arrays/shard-{shard[0]}-of-{shard[1]}"


def export_main(argv: list[str]) -> int:
    """The ``maskviewer export`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from maskviewer.io.export import ExportError

    try:
        setup = check_arguments(args)
    except (UsageError, ExportError) as exc:
        say(f"maskviewer export: {exc}")
        return 2
    loaded = _load(args)
    if loaded is None:
        return 2
    host, model_sha, plan = loaded
    for note in plan.notes:
        say(f"maskviewer export: note: {note}")
    t0 = time.perf_counter()
    result = _export(args, setup, host, plan)
    if result is None:
        return 2
    manifest, (done, failed) = result
    seconds = time.perf_counter() - t0
    header = manifest_header(argv, args, setup, host, plan, model_sha, (done, failed), seconds)
    try:
        path = manifest.finish(header)
    except OSError as exc:
        say(f"maskviewer export: writing the manifest failed: {exc}")
        return 2
    if not args.quiet:
        say(summary(manifest.count, done, failed, seconds, path))
    return 1 if failed else 0


def check_arguments(args: argparse.Namespace) -> Setup:
    """Check what can be checked without the model, find the images, check the output folder.

    Raises
    ------
    UsageError
        Options that cannot work, no images, or an earlier export in the way.
    maskviewer.io.export.ExportError
        The style is invalid or the output folder cannot be written.
    """
    from maskviewer.io.export import MANIFEST_NAME, ExportStyle, check_writable

    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    style = ExportStyle(args.colormap, args.normalisation, args.alpha, formats,
                        overlay=not args.no_overlay, legend=args.legend)
    parse_reduce(args.reduce)
    parse_threshold(args.threshold)
    shard = parse_shard(args.shard)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1.")
    check_trust(args)
    all_paths = find_images(args.images, args.recursive)
    if not all_paths:
        raise UsageError("No images found in " + ", ".join(args.images) + ".")
    paths = shard_slice(all_paths, shard)
    stems = image_stems(all_paths)
    out = check_writable(args.out)
    manifest_name = MANIFEST_NAME if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.json"
    if (out / manifest_name).exists() and not args.overwrite:
        raise UsageError(
            f"{out / manifest_name} exists: {out} holds an earlier export. Choose another "
            "--out folder or add --overwrite."
        )
    return Setup(style, shard, all_paths, paths, stems, out, manifest_name)


def _load(args: argparse.Namespace) -> tuple[Any, str, Plan] | None:
    """``(model host, model file SHA-256, plan)``, or None once the refusal is reported."""
    from maskviewer.core.errors import UnsafeModelError
    from maskviewer.inference.loading import file_sha256

    try:
        host = load_model(args)
        model_sha = file_sha256(args.model)
        plan = make_plan(args, host)
    except UnsafeModelError as exc:
        say(f"maskviewer export: {exc}\nAdd --trust to load it anyway.")
        return None
    except MaskviewerError as exc:
        say(f"maskviewer export: {exc}")
        return None
    return host, model_sha, plan


def _export(args: argparse.Namespace, setup: Setup, host: Any, plan: Plan) -> tuple[Any, tuple[int, int]] | None:
    """Write every image's files; ``(manifest, (done, failed))``, or None if the arrays failed.

    On any error the half-written files are abandoned (the folder holds no partial export
    that looks complete).
    """
    from maskviewer.io.export import ArtifactWriter, Manifest

    writer = ArtifactWriter(setup.out, setup.style, overwrite=args.overwrite, durable=args.durable,
                            npy_layout=args.npy_layout, stack_dir=setup.stack_dir)
    manifest = Manifest(setup.out, setup.manifest_name)
    bar = ProgressBar(len(setup.paths), enabled=not args.quiet and sys.stderr.isatty())
    try:
        counts = run_export(args, setup.paths, setup.stems, host, plan, writer, manifest, say, bar)
        writer.close()
    except OSError as exc:  # the stacked arrays could not be finished (disk full...)
        writer.abandon()
        manifest.abandon()
        bar.close()
        say(f"maskviewer export: writing the arrays failed: {exc}")
        return None
    except BaseException:
        writer.abandon()
        manifest.abandon()
        bar.close()
        raise
    bar.update(sum(counts), counts[1], force=True)
    bar.close()
    return manifest, counts
