"""File → Export…: the dialog that picks what to export, how, and where.

Widgets only: the items come from the tools (``export_items()``), what was never made is
left out before (:func:`maskviewer.gui.export_choice.offered`), and the answer is an
:class:`~maskviewer.gui.export_choice.ExportChoice`. The dialog is shown through
``window.dialogs.run(dialog)``, so a test answers it without a modal loop (or builds it, sets
it with :meth:`ExportDialog.set_folder`, :meth:`~ExportDialog.check_only` … and reads
:meth:`~ExportDialog.choice`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.gui.export_choice import (
    FORMAT_LABELS,
    SCALES,
    ExportChoice,
    item_detail,
    item_title,
    thumbnail_rgba,
)
from maskviewer.io.export import ExportItem
from maskviewer.io.export.items import AUTO_SCALE_SIDE
from maskviewer.io.export.pictures import picture_scale

THUMB = 56


def rgba_pixmap(rgba: np.ndarray, side: int = THUMB) -> QPixmap:
    """An RGBA array as a pixmap fitting ``side`` x ``side`` (nearest: small maps stay crisp)."""
    a = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = a.shape[:2]
    image = QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QPixmap.fromImage(image).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


class ExportDialog(QDialog):
    """Choose the items to export (each with a preview), the formats, the scale and the folder.

    Parameters
    ----------
    items : list of ExportItem
        What can be exported now (already without what was never made).
    choice : ExportChoice
        The starting values (the remembered folder, formats, scale...); every item checked.
    image_size : (int, int) or None
        ``(height, width)`` of the image: the scale row says the pictures' size.
    browse : callable, optional
        ``browse(current_folder) -> folder or None``: the folder picker (``window.dialogs``).
    colormap : str
        The colours of the previews (as the Layers panel shows them).
    """

    def __init__(
        self,
        items: list[ExportItem],
        choice: ExportChoice,
        image_size: tuple[int, int] | None = None,
        browse: Callable[[str], str | None] | None = None,
        colormap: str = "viridis",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.items = list(items)
        self.image_size = image_size
        self._browse = browse
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>What to export</b> — what the window shows now; untick what you do not want."))
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setMinimumHeight(min(4, max(1, len(items))) * (THUMB + 8) + 8)
        for item in self.items:
            self.list.addItem(self._row(item, colormap))
        self.list.itemChanged.connect(lambda _i: self._update())
        layout.addWidget(self.list, 1)
        layout.addLayout(self._select_row())
        layout.addLayout(self._options(choice))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.resize(560, 520)
        self._update()

    # -- building ----------------------------------------------------------------------------

    def _row(self, item: ExportItem, colormap: str) -> QListWidgetItem:
        row = QListWidgetItem(f"{item_title(item)}\n{item_detail(item)}")
        rgba = thumbnail_rgba(item, colormap)
        if rgba is None:  # numbers, not a map: an empty square keeps the rows aligned
            blank = QPixmap(THUMB, THUMB)
            blank.fill(Qt.GlobalColor.transparent)
            row.setIcon(QIcon(blank))
        else:
            row.setIcon(QIcon(rgba_pixmap(rgba)))
        row.setToolTip(f"Files: {item.stem()}.png / .npy (under the image's folder)")
        row.setFlags(row.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        row.setCheckState(Qt.CheckState.Checked)
        return row

    def _select_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        for text, on in (("Select all", True), ("Select none", False)):
            button = QPushButton(text)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _c=False, v=on: self.check_all(v))
            row.addWidget(button)
        row.addStretch(1)
        self.count_label = QLabel()
        row.addWidget(self.count_label)
        return row

    def _options(self, choice: ExportChoice) -> QFormLayout:
        form = QFormLayout()
        self.formats = QComboBox()
        for key, label in FORMAT_LABELS.items():
            self.formats.addItem(label, key)
        self.formats.setCurrentIndex(max(0, self.formats.findData(choice.formats)))
        self.formats.currentIndexChanged.connect(lambda _i: self._update())
        form.addRow("Formats", self.formats)
        self.scale = QComboBox()
        for s in SCALES:
            label = (f"Auto (small pictures enlarged to ≥ {AUTO_SCALE_SIDE} px)" if s == "auto"
                     else "1× (the image's size)" if s == 1 else f"{s}×")
            self.scale.addItem(label, s)
        self.scale.setCurrentIndex(max(0, self.scale.findData(choice.scale)))
        self.scale.setToolTip("Heatmap and overlay PNGs are enlarged by whole pixels (nearest neighbour); "
                              "mask and binary PNGs keep their exact size")
        self.scale.currentIndexChanged.connect(lambda _i: self._update())
        self.size_label = QLabel()
        scale_row = QHBoxLayout()
        scale_row.addWidget(self.scale, 1)
        scale_row.addWidget(self.size_label)
        form.addRow("Picture scale", scale_row)
        self.overlay = QCheckBox("Heatmaps over the image (…_overlay.png)")
        self.overlay.setChecked(choice.overlay)
        self.legend = QCheckBox("Colour-bar legends (…_legend.png)")
        self.legend.setChecked(choice.legend)
        form.addRow("Pictures", self.overlay)
        form.addRow("", self.legend)
        self.folder = QLineEdit(choice.folder)
        self.folder.textChanged.connect(lambda _t: self._update())
        browse = QPushButton("Choose…")
        browse.setAutoDefault(False)
        browse.clicked.connect(lambda _c=False: self.browse())
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)
        return form

    # -- the API tests and the tool use ---------------------------------------------------------

    def rows(self) -> list[QListWidgetItem]:
        return [self.list.item(i) for i in range(self.list.count())]

    def check_all(self, on: bool) -> None:
        state = Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
        for row in self.rows():
            row.setCheckState(state)

    def set_checked(self, index: int, on: bool) -> None:
        self.list.item(index).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def check_only(self, predicate: Callable[[ExportItem], bool]) -> None:
        """Tick exactly the items ``predicate`` accepts."""
        for item, row in zip(self.items, self.rows(), strict=True):
            row.setCheckState(Qt.CheckState.Checked if predicate(item) else Qt.CheckState.Unchecked)

    def set_folder(self, folder: str) -> None:
        self.folder.setText(str(folder))

    def set_formats(self, key: str) -> None:
        self.formats.setCurrentIndex(self.formats.findData(key))

    def set_scale(self, scale: int | str) -> None:
        self.scale.setCurrentIndex(self.scale.findData(scale))

    def browse(self) -> None:
        """Pick the folder with the window's folder picker, starting at the current one."""
        if self._browse is None:
            return
        chosen = self._browse(self.folder.text())
        if chosen:
            self.set_folder(chosen)

    def chosen(self) -> list[int]:
        return [i for i, row in enumerate(self.rows()) if row.checkState() == Qt.CheckState.Checked]

    def choice(self) -> ExportChoice:
        """What the dialog says now."""
        return ExportChoice(
            folder=self.folder.text().strip(), chosen=self.chosen(), formats=self.formats.currentData(),
            scale=self.scale.currentData(), legend=self.legend.isChecked(), overlay=self.overlay.isChecked(),
        )

    def _update(self) -> None:
        n = len(self.chosen())
        self.count_label.setText(f"{n} of {len(self.items)} chosen")
        self.export_button.setEnabled(n > 0 and bool(self.folder.text().strip()))
        pictures = self.formats.currentData() != "npy"
        for w in (self.scale, self.overlay, self.legend):
            w.setEnabled(pictures)
        text = ""
        if self.image_size is not None and pictures:
            h, w = self.image_size
            f = picture_scale(self.scale.currentData(), h, w)
            text = f"{w}×{h} → {w * f}×{h * f} px"
        self.size_label.setText(text)
