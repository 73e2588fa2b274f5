"""The banner above the image while a demo is open: what to try, and how well the model scores.

The status bar's messages come and go ("Loaded X.keras" replaces the last one within a second);
a demo's instructions must stay, so they live in a bar of their own above the canvas
(``window.add_canvas_widget(banner, "top")``). Its close button hides it; opening another
demo replaces its text; opening a model that is not the demo's hides it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.demo import Demo

#: What to try in each bundled demo (a demo may also give its own as ``"try"`` in demos.json).
TRY = {
    "digits": "Open another digit image (File → Open Image, or drop one on the image) and watch "
              "the class probabilities change.",
    "mask_channel": "The mask marks one of the four digits: paint over another digit and the answer "
                    "follows it, or run Model → Mask Ablation to see what the mask is worth.",
    "masked_kernels": "In the Kernels panel, click kernel taps to switch them off, then Apply to a "
                      "copy: the prediction changes (the centre 3×3 alone drops accuracy to 56%). "
                      "Reset runs the model as loaded.",
    "counting": "The Layers view shows the 'attention' layer that weighs every position before the "
                "count; pick other layers or methods to see what each input stream contributes.",
    "binary": "Binarise 'mark' (try Method → Otsu), tick TP / FP / FN to see where it differs from "
              "the sample's mark mask, and open Side by side to compare input and output.",
    "patches": "The four corner patches vote on the digit; the map shows each corner's score. Step "
               "through the patches, or set a smaller size and run all patches again.",
    "vit": "The Attention view shows rollout from the class token: it follows the digit. Pick a "
           "block and a head, or click a patch to see where it attends; in Layers the token "
           "layers are 8×8 maps.",
}

_IMPERATIVE = re.compile(r"^(Open|Paint|Binarise|Try|Run|Click|Switch|Compare|Step|Pick|Load)\b")


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]  # not str.capitalize: "Dice" keeps its capital


def try_text(demo: Demo) -> str:
    """What the banner asks the user to try in ``demo``.

    The demo's own ``"try"`` entry first, then :data:`TRY`, then the sentences of its
    description that tell the user to do something, and at last the whole description.
    """
    own = demo.extra.get("try")
    if isinstance(own, str) and own.strip():
        return own.strip()
    if demo.name in TRY:
        return TRY[demo.name]
    sentences = re.split(r"(?<=[.!?])\s+", demo.description.strip())
    asks = [s for s in sentences if _IMPERATIVE.match(s)]
    return " ".join(asks) if asks else demo.description.strip()


class DemoBanner(QFrame):
    """A dismissible bar with the open demo's title, held-out score and what to try.

    Attributes
    ----------
    demo : Demo or None
        The demo shown (None before any).
    """

    def __init__(self, on_details: Callable[[str], object] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demoBanner")
        self.setStyleSheet(
            "#demoBanner { background: #fff8d8; border-bottom: 1px solid #d8c890; }"
            "#demoBanner QLabel { color: #202020; }"
        )
        self.demo: Demo | None = None
        self._on_details = on_details
        self.title = QLabel("")  # the demo's title and held-out score
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QToolButton()
        self.details.setText("More…")
        self.details.setAutoRaise(True)
        self.details.setToolTip("The demo's full description, in Help → Demos")
        self.details.clicked.connect(self._details)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this banner (Help → Demos shows the text again)")
        self.close_button.clicked.connect(self.hide)

        text = QVBoxLayout()
        text.setSpacing(2)
        for label in (self.title, self.text):
            text.addWidget(label)
        buttons = QVBoxLayout()
        buttons.setSpacing(0)
        buttons.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignRight)
        buttons.addWidget(self.details)
        buttons.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addLayout(text, 1)
        lay.addLayout(buttons)
        self.hide()

    def show_demo(self, demo: Demo) -> None:
        """Show ``demo``'s title, score and what to try (replacing the demo shown before)."""
        self.demo = demo
        self.title.setText(
            f"<b>Demo: {html.escape(demo.title)}</b> &nbsp; "
            f'<span style="color: #206020;">{html.escape(_first_upper(demo.score_text()))}</span>'
        )
        self.text.setText(try_text(demo))
        self.show()

    def _details(self) -> None:
        if self.demo is not None and self._on_details is not None:
            self._on_details(self.demo.name)
