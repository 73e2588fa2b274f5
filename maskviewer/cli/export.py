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
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskviewer.cli.args import UsageError, check_paths, check_trust, load_model, quiet_backend, say
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
    lock: Any = None  # ExportLock, held until the command ends

    @property
    def stack_dir(self) -> str:
        """Where this shard's stacked arrays go, under the output folder."""
        shard = self.shard
        return "arrays" if shard is None else f"arrays/shard-{shard[0]}-of-{shard[1]}"


def export_main(argv: list[str]) -> int:
    """The ``maskviewer export`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet_backend(args)  # TensorFlow's start-up chatter off the terminal unless --verbose
    from maskviewer.io.export import ExportError

    try:
        setup = check_arguments(args)
    except (UsageError, ExportError) as exc:
        say(f"maskviewer export: {exc}")
        return 2
    try:  # the output folder is ours until the command ends (the lock goes with the process)
        return _locked_main(argv, args, setup)
    finally:
        setup.lock.release()


def _locked_main(argv: list[str], args: argparse.Namespace, setup: Setup) -> int:
    """The export, once the arguments are checked and the output folder is locked."""
    loaded = _load(args)
    if loaded is None:
        return 2
    host, model_sha, plan = loaded
    for note in plan.notes:
        say(f"maskviewer export: note: {note}")
    t0 = time.perf_counter()
    result = _export(argv, args, setup, host, plan, model_sha)
    if result is None:
        return 2
    manifest, (done, failed) = result
    seconds = time.perf_counter() - t0
    # the command as it would run uninterrupted: a resumed run writes the same manifest
    command = [a for a in argv if a != "--resume"]
    header = manifest_header(command, args, setup, host, plan, model_sha, (done, failed), seconds)
    try:
        path = manifest.finish(header, order=setup.paths)
    except OSError as exc:
        manifest.abandon()
        say(f"maskviewer export: writing the manifest failed: {exc}")
        return 2
    manifest.journal.remove()
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
    from maskviewer.io.export.lock import ExportLock

    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    style = ExportStyle(args.colormap, args.normalisation, args.alpha, formats,
                        overlay=not args.no_overlay, legend=args.legend, scale=args.png_scale)
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
    setup = Setup(style, shard, all_paths, paths, stems, out, manifest_name)
    _check_folders(setup)
    check_paths(args, "model", "custom_objects")  # at once, not after the backend's start
    setup.lock = ExportLock(out, manifest_name)  # before looking at what the folder holds
    try:
        _check_earlier_export(args, setup)
    except BaseException:
        setup.lock.release()
        raise
    return setup


def _check_folders(setup: Setup) -> None:
    """Refuse an image whose folder would be the manifest, the arrays or the run's own files."""
    from maskviewer.io.export import naming

    for path in setup.paths:
        reason = naming.reserved_reason(setup.stems[path], setup.stack_dir)
        if reason:
            raise UsageError(
                f"{path}: its files would go to {setup.out / setup.stems[path]}, {reason}. Rename "
                "the image (or copy it under another name); nothing was exported."
            )


def _check_earlier_export(args: argparse.Namespace, setup: Setup) -> None:
    """An earlier export's manifest, or a killed run's journal, is in the way unless told."""
    from maskviewer.io.export import naming

    out, name = setup.out, setup.manifest_name
    unfinished = os.path.lexists(out / naming.run_file_name("journal", name))
    if unfinished and not (args.resume or args.overwrite):
        raise UsageError(
            f"{out} holds an unfinished export (it was stopped). Add --resume to go on with it, "
            "or --overwrite to start again."
        )
    if (out / name).exists() and not args.overwrite and not (args.resume and unfinished):
        raise UsageError(
            f"{out / name} exists: {out} holds an earlier export"
            + (" that is complete: there is nothing to resume" if args.resume else "")
            + ". Choose another --out folder or add --overwrite."
        )


def _load(args: argparse.Namespace) -> tuple[Any, str, Plan] | None:
    """``(model host, model file SHA-256, plan)``, or None once the refusal is reported."""
    from maskviewer.core.errors import UnsafeModelError

    try:
        host = load_model(args)
        # the hash of the bytes that were loaded, not of the path read again
        model_sha = host.loaded.sha256
        plan = make_plan(args, host)
    except UnsafeModelError as exc:
        say(f"maskviewer export: {exc}\nAdd --trust to load it anyway.")
        return None
    except MaskviewerError as exc:
        say(f"maskviewer export: {exc}")
        return None
    return host, model_sha, plan


def _export(
    argv: list[str], args: argparse.Namespace, setup: Setup, host: Any, plan: Plan, model_sha: str,
) -> tuple[Any, tuple[int, int]] | None:
    """Write every image's files; ``(manifest, (done, failed))``, or None if the arrays failed.

    Images are journalled as their files are written; with ``--resume`` the images a killed
    run finished are kept. On an error the stacked arrays are abandoned (the folder holds no
    partial export that looks complete) and the journal stays, for ``--resume``.
    """
    from maskviewer.io.export import ExportError, Manifest

    try:
        journal, writer = _open_run(argv, args, setup, model_sha)
    except (ExportError, OSError) as exc:
        say(f"maskviewer export: {exc}")
        return None
    manifest = Manifest(setup.out, setup.manifest_name, journal)
    kept = sum(1 for p in setup.paths if p in journal.done)
    if kept and not args.quiet:
        say(f"maskviewer export: resuming: {kept} of {len(setup.paths)} image(s) were done already.")
    todo = [p for p in setup.paths if p not in journal.done]
    bar = ProgressBar(len(todo), enabled=not args.quiet and sys.stderr.isatty())
    try:
        done, failed = run_export(args, todo, setup.stems, host, plan, writer, manifest, say, bar)
        counts = (done + kept, failed)
        writer.close()
    except OSError as exc:  # the stacked arrays could not be finished (disk full...)
        writer.abandon()
        manifest.abandon()
        bar.close()
        say(f"maskviewer export: writing the arrays failed: {exc}")
        return None
    except BaseException:  # interrupted: what the journal vouches for stays, for --resume
        writer.suspend()
        manifest.abandon()
        bar.close()
        raise
    bar.update(done + failed, failed, force=True)
    bar.close()
    return manifest, counts


def _open_run(argv: list[str], args: argparse.Namespace, setup: Setup, model_sha: str) -> tuple[Any, Any]:
    """The run's journal (new, or the killed run's with ``--resume``) and its artifact writer,
    the killed run's stacked arrays reopened and its other temporary files removed."""
    import hashlib

    from maskviewer.io.export import ArtifactWriter, naming
    from maskviewer.io.export.journal import Journal
    from maskviewer.io.export.lock import remove_temp_files
    from maskviewer.io.export.stack import NpyStack

    quiet = {"--resume", "--quiet", "-q", "--overwrite", "--durable", "--verbose"}  # they change no file
    run = {"command": [a for a in argv if a not in quiet], "model_sha256": model_sha,
           "images": hashlib.sha256("\n".join(setup.all_paths).encode()).hexdigest()}
    resume = args.resume and os.path.lexists(setup.out / naming.run_file_name("journal", setup.manifest_name))
    stacks: dict = {}
    if resume:
        journal, stacks = Journal.resume(setup.out, setup.manifest_name, run)
    else:
        journal = Journal.create(setup.out, setup.manifest_name, run)
    keep = {NpyStack.temp_path(setup.out / rel, journal.token).name for rel in stacks}
    if resume or args.overwrite:
        remove_temp_files(setup.out, keep)
    writer = ArtifactWriter(setup.out, setup.style, overwrite=args.overwrite or resume, durable=args.durable,
                            npy_layout=args.npy_layout, stack_dir=setup.stack_dir, stack_token=journal.token)
    try:
        writer.resume_stacks(stacks)
    except BaseException:
        writer.abandon()
        journal.close()
        raise
    journal.stack_keys = writer.stack_keys
    journal.before_commit = writer.sync
    return journal, writer
