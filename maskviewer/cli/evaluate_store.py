"""Where an evaluation's results live: the table, its description, reuse and merging.

The description (``TABLE.json``) holds a fingerprint of everything that decides a row (the
model file, the data set, the plan and the scoring settings); a row is reused on the next run
when the fingerprint matches and its entry's files have the same size and modification time
(its ``stat`` column). Shards carry the same fingerprint, so :func:`merge_shards` refuses to
join tables made with different settings and says which shards are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from maskviewer.core.dataset import DatasetError, DatasetIndex, Entry
from maskviewer.core.evaluation import aggregate
from maskviewer.io.results_table import TABLE_SUFFIXES, read_table, write_table

SHARD_NAME = re.compile(r"^results-shard-(\d+)-of-(\d+)\.(csv|parquet)$")


def _file_stat(path: str) -> str:
    file = path.split("::", 1)[0]
    try:
        st = os.stat(file)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def entry_stat(entry: Entry) -> str:
    """The size and modification time of every file an entry reads (its row is reused while
    they stay the same)."""
    if entry.mask is None and entry.reference is None and not entry.inputs:
        return _file_stat(entry.image.path)  # the usual entry: its picture alone
    sources = [entry.image, entry.mask, entry.reference, *entry.inputs.values()]
    return ";".join(_file_stat(s.path) for s in sources if s is not None)


class Store:
    """One evaluation's table: what can be reused from an earlier run, and saving the new one."""

    def __init__(self, path: Path, host: Any, index: DatasetIndex, plan: Any, settings: Any,
                 shard: tuple[int, int] | None) -> None:
        self.path, self.index, self.shard = path, index, shard
        self.stats = {e.key: entry_stat(e) for e in index.entries}
        model = getattr(host.info, "path", None) or ""
        self.settings = {
            "model": model, "model_stat": _file_stat(model) if model else "",
            "dataset": {"name": index.name, "root": index.root, "kind": index.kind, "entries": len(index)},
            "plan": plan.settings(), "scoring": asdict(settings) | {"batch_size": None},
            "classes": plan.labels or index.classes,
        }
        text = json.dumps(self.settings, sort_keys=True, default=str)
        self.fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def reusable(self) -> dict[str, dict]:
        """Rows of an earlier run with the same fingerprint whose files did not change."""
        if not self.path.exists():
            return {}
        try:
            rows, meta = read_table(self.path)
        except DatasetError:
            return {}
        if meta.get("fingerprint") != self.fingerprint:
            return {}
        return {r["key"]: r for r in rows
                if not r.get("error_message") and r.get("stat") == self.stats.get(str(r.get("key")))}

    def record(self, rows: list[dict], seconds: float) -> dict:
        """Write the table (each row with its entry's ``stat``) and its description; return the
        aggregates."""
        for r in rows:
            r["stat"] = self.stats.get(r["key"], "")
        classes = self.settings["classes"]
        summary = aggregate(rows, len(classes) if classes else None)
        meta = {"fingerprint": self.fingerprint, "settings": self.settings, "summary": summary,
                "shard": list(self.shard) if self.shard else None, "seconds": round(seconds, 3)}
        write_table(self.path, rows, meta)
        return summary


def merge_shards(folder: Path, out: Path | None = None) -> tuple[Path, dict]:
    """Join ``folder``'s shard tables (``results-shard-I-of-N.csv``) into one table.

    Raises
    ------
    DatasetError
        No shard tables, shards of different runs (fingerprints or N differ), missing shards.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    found = {}
    for f in sorted(folder.iterdir()):
        m = SHARD_NAME.match(f.name)
        if m:
            found[int(m.group(1))] = (f, int(m.group(2)))
    if not found:
        raise DatasetError(f"{folder}: no shard tables (results-shard-I-of-N.csv) to merge")
    totals = {n for _f, n in found.values()}
    if len(totals) != 1:
        raise DatasetError(f"{folder}: shards of different splits ({', '.join(f'of {n}' for n in sorted(totals))})")
    n = totals.pop()
    missing = sorted(set(range(1, n + 1)) - set(found))
    if missing:
        raise DatasetError(f"{folder}: shard(s) {', '.join(map(str, missing))} of {n} missing; run them first")
    parts, fingerprints, metas = [], set(), []
    for i in range(1, n + 1):
        rows, meta = read_table(found[i][0])
        parts.append(rows)
        metas.append(meta)
        fingerprints.add(meta.get("fingerprint"))
    if len(fingerprints) != 1:
        raise DatasetError(f"{folder}: the shards were made with different models or settings; run them alike")
    # shard I holds entries I-1, I-1+N, …: interleave them back into the data set's order
    rows = [parts[k % n][k // n] for k in range(sum(len(p) for p in parts))]
    classes = metas[0].get("settings", {}).get("classes")
    summary = aggregate(rows, len(classes) if classes else None)
    target = out or folder / "results.csv"
    if target.suffix.lower() not in TABLE_SUFFIXES:
        raise DatasetError(f"{target.name}: write the merged table as .csv or .parquet")
    meta = {"fingerprint": metas[0].get("fingerprint"), "settings": metas[0].get("settings"), "summary": summary,
            "shard": None, "merged_from": [found[i][0].name for i in range(1, n + 1)],
            "seconds": sum(m.get("seconds", 0) for m in metas)}
    write_table(target, rows, meta)
    return target, summary
