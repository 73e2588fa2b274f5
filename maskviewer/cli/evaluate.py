"""``maskviewer evaluate DATA --model MODEL --out TABLE`` and ``maskviewer merge DIR``.

``evaluate`` runs a model over a data set (a folder, a CSV/JSON list, an ``.npz``/``.npy`` of
arrays, or a demo's held-out set with ``--demo``) and writes one row per image to a CSV or
Parquet table, with the data set's aggregates beside it (``TABLE.json``). The input mapping,
mask, patch and threshold options are those of ``maskviewer export``. ``--shard I/N`` scores
every N-th entry so an array job (SLURM arrays, Kubernetes indexed jobs) spreads a data set
over machines; ``maskviewer merge DIR`` joins the shards' tables and computes the aggregates
of the whole.

Exit codes: 0 every entry scored; 1 some entries failed (their rows say why); 2 nothing done.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from maskviewer.cli.args import (
    UsageError,
    add_trust_options,
    add_verbose_option,
    check_trust,
    quiet_backend,
    say,
)
from maskviewer.core.errors import MaskviewerError

DEFAULT_BATCH = 128


def build_parser() -> argparse.ArgumentParser:
    """The ``maskviewer evaluate`` command line (the input, patch and threshold options are export's)."""
    from maskviewer.cli.export_options import (
        _add_input_options,
        _add_patch_options,
        _add_threshold_options,
    )

    p = argparse.ArgumentParser(
        prog="maskviewer evaluate",
        description=(
            "Score a model on a data set: one row per image (prediction, truth, loss or error, Dice, "
            "patch rules, mask ablation) in a CSV or Parquet table, and the data set's aggregates "
            "(accuracy and confusion matrix, MAE, Dice-vs-threshold and its best threshold, accuracy "
            "per patch rule, mask ablation with 95% intervals) in TABLE.json. Needs no display."
        ),
        epilog="Exit status: 0 every entry scored, 1 some entries failed (see their rows), 2 nothing done.",
    )
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="a folder (class sub-folders give labels), a .csv/.json list, an .npz or .npy of arrays")
    p.add_argument("--demo", metavar="NAME", help="a bundled demo's model and held-out set")
    p.add_argument("--model", "-m", help=".keras, .h5 or a SavedModel folder")
    p.add_argument("--out", "-o", required=True, metavar="TABLE|DIR",
                   help="results.csv or results.parquet (a folder: results[-shard-I-of-N].csv inside)")
    g = p.add_argument_group("what is scored")
    g.add_argument("--output", metavar="NAME", help="the vector output scored (default: the first)")
    g.add_argument("--map-output", metavar="NAME", help="the image-shaped output scored against reference masks")
    g.add_argument("--class", dest="class_index", type=int, metavar="N", help="the channel of a map output")
    g.add_argument("--labels", metavar="FILE", help="class names (one per line, or JSON)")
    g.add_argument("--ablation", action="store_true",
                   help="also run each image with no mask, all ones, a random mask and the inverted mask")
    _add_input_options(p.add_argument_group("input mapping and masks"))
    _add_patch_options(p.add_argument_group("patches"))
    _add_threshold_options(p.add_argument_group("binarising"))
    r = p.add_argument_group("running")
    r.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"images per model call (default {DEFAULT_BATCH})")
    r.add_argument("--shard", metavar="I/N", help="score only entries I, I+N, I+2N, … (1 <= I <= N)")
    r.add_argument("--rerun", action="store_true", help="score every entry again (default: reuse unchanged rows)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")
    add_trust_options(r)
    add_verbose_option(r)
    return p


def table_path(out: str, shard: tuple[int, int] | None) -> Path:
    """The table's path: ``out`` itself, or ``out/results[-shard-I-of-N].csv`` for a folder."""
    p = Path(out)
    if p.suffix.lower() in (".csv", ".parquet"):
        return p
    name = "results.csv" if shard is None else f"results-shard-{shard[0]}-of-{shard[1]}.csv"
    return p / name


def _demo_defaults(args: argparse.Namespace) -> Any:
    """Fill the model, data set, mask mode and patches a demo's score was measured with."""
    from maskviewer.demo import get_demo
    from maskviewer.io.dataset import demo_dataset

    try:
        demo = get_demo(args.demo)
    except MaskviewerError as exc:
        raise UsageError(str(exc)) from exc
    args.model = args.model or str(demo.path(demo.model))
    focus = demo.focus or {}
    if args.map_output is None and focus.get("output"):
        args.map_output = focus["output"]
    if args.mask_mode is None and focus.get("feed"):
        args.mask_mode = focus["feed"]
    index = demo_dataset(demo)
    if args.patch_size is None and focus.get("preset") == "corners" and focus.get("size"):
        from maskviewer.io.dataset import PictureReader

        first = PictureReader().picture(index.entries[0].image)  # the four corner patches
        size = int(focus["size"])
        args.patch_size = str(size)
        args.patch_stride = f"{max(1, first.height - size)}x{max(1, first.width - size)}"
    if args.labels is None and demo.labels:
        args.labels = str(demo.path(demo.labels))
    return index


def _export_like(args: argparse.Namespace, index: Any) -> argparse.Namespace:
    """The options as the export plan reads them (no layers, no CAMs, outputs kept; the
    entries' own masks stand for ``--mask``)."""
    ns = argparse.Namespace(**vars(args))
    for name, value in (("layer", []), ("reduce", None), ("cam", None), ("no_predictions", False)):
        setattr(ns, name, value)
    if ns.mask is None and any(e.mask is not None for e in index.entries):
        ns.mask = index.root
    return ns


def _attach(index: Any, masks: str | None, references: str | None) -> None:
    """Give entries without a mask / reference the file of the same stem in ``--mask DIR`` /
    ``--reference DIR`` (one file: every entry's)."""
    from dataclasses import replace

    from maskviewer.core.dataset import Source

    def find(base: str | None, entry: Any) -> Any:
        if base is None:
            return None
        b = Path(base)
        if not b.is_dir():
            return Source(str(b))
        stem = Path(entry.image.path).stem if entry.image.row is None else entry.key
        hit = next((b / f"{stem}{s}" for s in (".png", ".npy", ".tif", ".tiff", ".bmp") if (b / f"{stem}{s}").exists()), None)
        return Source(str(hit)) if hit else None

    index.entries = [
        replace(e, mask=e.mask or find(masks, e), reference=e.reference or find(references, e))
        for e in index.entries
    ]


def evaluate_main(argv: list[str]) -> int:
    """The ``maskviewer evaluate`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet_backend(args)
    from maskviewer.cli.export_options import parse_shard, parse_threshold
    from maskviewer.core.dataset import shard
    from maskviewer.io.dataset import open_dataset

    try:
        if (args.data is None) == (args.demo is None):
            raise UsageError("give a data set (DATA) or --demo NAME, not both")
        index = _demo_defaults(args) if args.demo else open_dataset(args.data)
        _attach(index, args.mask, args.reference)
        if not args.model:
            raise UsageError("--model is required (or --demo)")
        if not Path(args.model).exists():
            raise UsageError(f"--model {args.model}: no such file or folder")
        which = parse_shard(args.shard)
        parse_threshold(args.threshold)
        check_trust(args)
        if args.batch_size < 1:
            raise UsageError("--batch-size must be at least 1.")
        out = table_path(args.out, which)
        entries = shard(index.entries, which)
    except MaskviewerError as exc:
        say(f"maskviewer evaluate: {exc}")
        return 2
    try:
        from maskviewer.cli.args import load_model

        host = load_model(args)
        return _run(args, host, index, entries, which, out)
    except MaskviewerError as exc:
        say(f"maskviewer evaluate: {exc}")
        return 2


def _run(args: argparse.Namespace, host: Any, index: Any, entries: list, which: Any, out: Path) -> int:
    from maskviewer.cli.evaluate_run import EvalSettings, Evaluator
    from maskviewer.cli.evaluate_store import Store
    from maskviewer.cli.export_plan import make_plan

    plan = make_plan(_export_like(args, index), host)
    settings = EvalSettings(args.output, args.map_output, args.ablation, args.batch_size)
    evaluator = Evaluator(host, index, plan, settings)
    evaluator.processes = True  # the command's reading runs in worker processes when large
    store = Store(out, host, index, plan, settings, which)
    if evaluator.output is not None:
        plan.notes.append(f"scoring the output {evaluator.output!r} as {evaluator.kinds.kind_of(evaluator.output).label}")
    if evaluator.map_output is not None and any(e.reference is not None for e in entries):
        plan.notes.append(f"scoring the map {evaluator.map_output!r} against the reference masks")
    reuse = {} if args.rerun else store.reusable()
    todo = [e for e in entries if e.key not in reuse]
    if any(e.inputs for e in entries):  # the entries name each input's picture themselves
        plan.notes[:] = [n for n in plan.notes if not n.startswith("inputs:") and "fed the same image" not in n]
    if not args.quiet:
        for note in plan.notes + index.notes:
            say(f"note: {note}")
        say(f"evaluating {len(todo)} of {len(entries)} entries of {index.name}"
            + (f" ({len(entries) - len(todo)} unchanged, reused)" if reuse else "") + f" with {Path(args.model).name}")
    t0 = time.perf_counter()
    fresh = {}

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            say(f"  {done}/{total} ({done / max(time.perf_counter() - t0, 1e-9):.0f} images/s)")

    for row in evaluator.rows(todo, progress):
        fresh[row["key"]] = row
    rows = [fresh.get(e.key) or reuse[e.key] for e in entries]
    summary = store.record(rows, time.perf_counter() - t0)
    if not args.quiet:
        say(describe_summary(summary))
        say(f"wrote {out}")
    return 1 if summary["failed"] else 0


def describe_summary(summary: dict) -> str:
    """The aggregates as a few lines for the terminal."""
    lines = [f"{summary['images']} images, {summary['failed']} failed"]
    if "classes" in summary:
        c = summary["classes"]
        lo, hi = c["ci95"]
        lines.append(f"accuracy {c['accuracy']:.4f} (95% CI {lo:.3f}–{hi:.3f}, n={c['n']})"
                     + (f", mean loss {c['mean_loss']:.4f}" if c.get("mean_loss") is not None else ""))
    if "regression" in summary:
        r = summary["regression"]
        lines.append(f"MAE {r['mae']:.4f}, RMSE {r['rmse']:.4f}, mean error {r['mean_error']:+.4f} (n={r['n']})")
    if "binary" in summary:
        b = summary["binary"]
        lines.append(f"mean Dice {b['mean_dice']:.4f}; best threshold {b['best_threshold']:.2f} "
                     f"(mean Dice {b['best_mean_dice']:.4f})")
    for rule, r in summary.get("patches", {}).items():
        lines.append(f"patches, {rule}: accuracy {r['accuracy']:.4f}")
    for variant, r in summary.get("ablation", {}).items():
        if "accuracy" in r:
            lines.append(f"mask {variant}: accuracy {r['accuracy']:.4f} (95% CI {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})")
        else:
            lines.append(f"mask {variant}: MAE {r['mae']:.4f}")
    return "\n".join(lines)


def merge_main(argv: list[str]) -> int:
    """``maskviewer merge DIR``: join the shards' tables in DIR and compute the aggregates."""
    from maskviewer.cli.evaluate_store import merge_shards

    p = argparse.ArgumentParser(prog="maskviewer merge",
                                description="Join the tables of `maskviewer evaluate --shard I/N` runs and compute the aggregates.")
    p.add_argument("folder", metavar="DIR", help="the folder the shards wrote their tables to")
    p.add_argument("--out", "-o", metavar="TABLE", help="the merged table (default DIR/results.csv)")
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    try:
        out, summary = merge_shards(Path(args.folder), Path(args.out) if args.out else None)
    except MaskviewerError as exc:
        say(f"maskviewer merge: {exc}")
        return 2
    if not args.quiet:
        say(describe_summary(summary))
        say(f"wrote {out}")
    return 0
