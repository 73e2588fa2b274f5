"""A data set as the evaluator sees it: entries (an image, its truth, its masks), no pixels.

An entry names where its image comes from — a file, or a row of an array file — and what is
known about it: a label (a class name or index, or a number for regression), a mask to feed
the model and a reference mask to score a binary output against. Reading the pixels is
:mod:`maskviewer.io.dataset`'s job; this module holds the index and the rules that need no
file: stable keys, labels turned into class indices, shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maskviewer.core.errors import MaskviewerError


class DatasetError(MaskviewerError):
    """A data set that cannot be read: a bad list file, an unknown column, no images."""


@dataclass(frozen=True)
class Source:
    """Where one picture comes from: a file, or row ``row`` of the array file ``path``.

    ``corner``/``size`` cut a square crop out of the picture (the demos' held-out sets are
    crops of one large image).
    """

    path: str
    row: int | None = None
    corner: tuple[int, int] | None = None
    size: int | None = None
    #: for a row of an array file: the channels that make the picture (None: all)
    channels: tuple[int, int] | None = None

    def describe(self) -> str:
        where = self.path if self.row is None else f"{self.path}[{self.row}]"
        if self.corner is not None:
            where += f" at ({self.corner[0]}, {self.corner[1]}) size {self.size}"
        return where


@dataclass(frozen=True)
class Entry:
    """One item of a data set.

    Attributes
    ----------
    key : str
        Unique and stable within the data set (the file's path relative to the data set, or
        ``name[row]``): results are matched to entries by it.
    image : Source
        The picture fed to the model.
    label : str or None
        The truth as written: a class name or index, or a number.
    mask, reference : Source or None
        A mask fed with the image; a reference mask a binary output is scored against.
    inputs : dict
        Model input name -> its own picture, for models with more than one image input.
    """

    key: str
    image: Source
    label: str | None = None
    mask: Source | None = None
    reference: Source | None = None
    inputs: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class DatasetIndex:
    """Every entry of a data set, in a fixed order, with what the data set says of itself.

    ``classes`` are the class names a folder of class sub-folders gives (label ``i`` is
    ``classes[i]``); ``name`` is shown to the user and written into results.
    """

    name: str
    root: str
    kind: str  # "folder", "list", "arrays" or "demo"
    entries: list[Entry]
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)


def shard(entries: list[Entry], which: tuple[int, int] | None) -> list[Entry]:
    """Shard ``I`` of ``N`` (1-based): entries ``I-1, I-1+N, …`` — every entry in exactly one shard.

    The same rule as ``maskviewer export --shard``, so an array job splits both alike.
    """
    if which is None:
        return list(entries)
    i, n = which
    if not (1 <= i <= n):
        raise DatasetError(f"shard {i}/{n}: I must be between 1 and N")
    return list(entries[i - 1 :: n])


def class_index(label: str | None, classes: list[str] | None) -> int | None:
    """The class index a label stands for: its position among ``classes``, or the label as an
    integer; None when there is no label or it names no class."""
    if label is None or label == "":
        return None
    text = str(label).strip()
    if classes and text in classes:
        if all(c.isdigit() for c in classes):  # folders named 0, 1, … are the indices themselves
            return int(text)
        return classes.index(text)
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


def label_value(label: str | None) -> float | None:
    """A label read as a number (regression truth), or None."""
    if label is None or label == "":
        return None
    try:
        return float(label)
    except ValueError:
        return None
