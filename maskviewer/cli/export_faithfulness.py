"""``maskviewer export --faithfulness``: each CAM scored by its deletion and insertion curves.

For every CAM export item of an image the curves are computed with the loaded model (the
explained class's score while the image's pixels are deleted, or inserted, in the order of
the map); their fractions, scores and areas go into the item's manifest entry under
``faithfulness`` and a plot of both curves is written beside the map (``STEM_plot.png``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: at most this many input values per model call while scoring the steps (bounded memory)
MAX_BATCH_VALUES = 16_000_000


def add_faithfulness(exports: list, item: Any, host: Any, plan: Any) -> None:
    """Score every CAM of ``exports`` (one image's items, changed in place)."""
    from maskviewer.inference.faithfulness import faithfulness_curves
    from maskviewer.io.export.plots import curves_plot

    settings = plan.faithfulness
    if not settings or not item.arrays:
        return
    name = next((k for k, v in item.arrays.items() if np.ndim(v) in (2, 3)), next(iter(item.arrays)))
    arrays = {k: np.asarray(v)[None] for k, v in item.arrays.items()}
    steps = int(settings["steps"])
    per_input = max(1, int(np.prod(np.shape(item.arrays[name]))))
    batch = int(max(1, min(steps + 1, MAX_BATCH_VALUES // per_input)))
    keys = list(host.loaded.output_keys)
    for e in exports:
        if e.kind != "cam" or e.class_index is None or np.ndim(e.values) != 2:
            continue
        output = e.info.get("output")
        curves = faithfulness_curves(
            host.model, host.pack_inputs, arrays, name, np.asarray(e.values, np.float32), int(e.class_index),
            output=output, output_keys=keys, steps=steps, baselines=settings["baselines"], batch=batch,
        )
        e.info["faithfulness"] = {
            "input": name, "steps": steps,
            "deletion_auc": curves["deletion"].auc, "insertion_auc": curves["insertion"].auc,
            "deletion": curves["deletion"].to_dict(), "insertion": curves["insertion"].to_dict(),
        }
        e.plot = curves_plot(
            {m: (c.fractions, c.scores, c.auc) for m, c in curves.items()},
            f"{e.method} · {e.name} · class {e.class_index}",
        )
