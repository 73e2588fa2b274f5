"""What an export tells: the progress bar on stderr, the manifest's header, the closing summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, failed: int, force: bool = False) -> None:
        """Redraw with ``done`` images handled (``failed`` of them failed), at most 10 times a second."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done / max(now - self.t0, 1e-9)
        extra = f", {failed} failed" if failed else ""
        sys.stderr.write(f"\r[{bar}] {done}/{self.total} images, {rate:.1f}/s{extra}  ")
        sys.stderr.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def manifest_header(
    argv: list[str], args: argparse.Namespace, setup: Any, host: Any, plan: Any,
    model_sha: str, counts: tuple[int, int], seconds: float,
) -> dict:
    """The manifest's header: the model, the command, the settings and the counts.

    Parameters
    ----------
    argv : list of str
        The ``maskviewer export`` arguments, recorded as the command.
    args, setup, host, plan
        The options, the checked setup (style, shard, image lists), the model and the plan.
    model_sha : str
        The model file's SHA-256.
    counts : (int, int)
        Images exported and images failed.
    seconds : float
        How long the export ran.
    """
    from maskviewer.cli.export_items import input_settings

    done, failed = counts
    shard = setup.shard
    return {
        "source": "command line",
        "model": {"path": str(Path(args.model).resolve()), "sha256": model_sha, "name": host.info.name},
        "command": ["maskviewer", "export", *argv],
        "settings": {**plan.settings(), **input_settings(host.info, plan),
                     "style": setup.style.to_dict(), "batch_size": args.batch_size,
                     "npy_layout": args.npy_layout},
        "shard": None if shard is None else {"index": shard[0], "count": shard[1]},
        "images": {"total": len(setup.all_paths), "in_shard": len(setup.paths), "exported": done,
                   "failed": failed},
        "seconds": round(seconds, 3),
        "outputs": output_kinds(host.info),
        "notes": plan.notes,
        # names whose files carry a hash because another name would share their files
        "file_names": plan.renamed(),
    }


def output_kinds(info: Any) -> dict:
    """How each model output is read (class scores, labels, values, a map), as the window
    proposes it (see :mod:`maskviewer.core.output_kinds`)."""
    from maskviewer.core.output_kinds import OutputKinds

    kinds = OutputKinds()
    kinds.set_model(info)
    out = {}
    for t in getattr(info, "outputs", []):
        k = kinds.kind_of(t.name)
        out[t.name] = {"kind": k.kind, "shown_as": k.label, "why": k.reason}
    return out


def summary(artifacts: int, done: int, failed: int, seconds: float, manifest_path: Any) -> str:
    """The closing line: how many files for how many images, how fast, where the manifest is."""
    rate = done / seconds if seconds > 0 else 0.0
    return (f"maskviewer export: {artifacts} artifacts for {done} image(s) in {seconds:.1f} s "
            f"({rate:.1f} images/s); manifest {manifest_path}"
            + (f"; {failed} image(s) failed" if failed else ""))
