"""The Data set tool: open a data set, score the model on every image on the worker, browse
the rows, open any one in every view.

A data set opens as a ``"dataset-open"`` job (its index and the table saved beside it by an
earlier run) and, with a model loaded, runs at once as one ``"dataset"`` job that streams its
rows a batch at a time (progress and Cancel through a :class:`~maskviewer.gui.jobs.JobClient`);
rows of unchanged images come from the saved table without running the model. A row chosen in
the table (click, arrow keys, J/K or Ctrl+Down/Up) opens its image with its mask (Masks tool),
its reference (Binarise tool) and its other inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import InputMapping
from maskviewer.gui.dataset.jobs import Opened, RowSink, RunOutcome, Thumbnails, open_job, run_job
from maskviewer.gui.dataset.model import DatasetTable
from maskviewer.gui.dataset.options import build_request
from maskviewer.gui.dataset.panel import DatasetPanel
from maskviewer.gui.jobs import JobClient

KIND, OPEN_KIND = "dataset", "dataset-open"
TITLE = "Data set"
DATASET_FILTER = "Data set lists (*.csv *.json *.npz *.npy);;All files (*)"
POLL_MS = 80
SUMMARY_EVERY = 6  # polls between aggregate updates while rows stream in
FOLLOW_MS = 60


class DatasetTool(QObject):
    """Owns the Data set page, its jobs and the thumbnails."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.controller = c = window.controller
        self.state = c.state
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
        #: where demos' results are kept (their files may be read-only)
        self.app_dir = Path(base or Path.home() / ".maskviewer") / "datasets"
        self.table = DatasetTable()
        self.thumbs = Thumbnails()
        self.panel = DatasetPanel(self.table, self.thumbs)
        self.page = window.add_panel(TITLE, self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.jobs = JobClient(c, (KIND, OPEN_KIND), self)
        self.opened: Opened | None = None
        self.sink: RowSink | None = None
        self.outcome: RunOutcome | None = None
        self.batch_size: int | None = None  # tests make runs of small batches
        self._entries: dict[str, Any] = {}
        self._polls = 0
        self._open_key: tuple[str, int] | None = None  # the row whose image is open, and that image
        self._run_invert: bool | None = None  # the foreground side the rows were scored with
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.follow_timer = QTimer(self)  # a threshold dragged: the table follows its last value
        self.follow_timer.setSingleShot(True)
        self.follow_timer.setInterval(FOLLOW_MS)
        self.follow_timer.timeout.connect(self.follow_threshold)
        self._connect()
        self._add_actions()

    def _connect(self) -> None:
        p, j = self.panel, self.jobs
        p.demo_button.clicked.connect(self.open_demo_set)
        p.run.clicked.connect(lambda: self.run())
        p.cancel.clicked.connect(self.cancel)
        p.row_chosen.connect(lambda pos: self.open_row(self.table.select(pos)))
        p.view.clicked.connect(lambda idx: self.open_row(self.table.select(idx.row())))
        j.finished.connect(self._finished)
        j.failed.connect(self._failed)
        j.cancelled.connect(self._cancelled)
        j.progress.connect(lambda kind, done, total: p.set_progress(done, total) if kind == KIND else None)
        j.running_changed.connect(lambda _r: p.set_running(j.is_running(KIND)))
        self.controller.worker.job_cancelled.connect(lambda kind, _g: self._stopped() if kind == KIND else None)
        self.state.model_changed.connect(self._model_changed)
        self.panel.view.verticalScrollBar().valueChanged.connect(lambda _v: self._ask_thumbs())

    def _add_actions(self) -> None:
        w = self.window
        self.open_action = QAction("Open &Data Set Folder…", w)
        self.open_action.setToolTip("A folder of images; class sub-folders give the labels, masks/ and references/ "
                                    "beside them the masks and reference masks")
        self.open_action.triggered.connect(lambda _c=False: self.open_dialog(folder=True))
        self.open_list_action = QAction("Open Data Set &List…", w)
        self.open_list_action.setToolTip("A CSV or JSON list (image, label, mask, reference) or an .npz/.npy of arrays")
        self.open_list_action.triggered.connect(lambda _c=False: self.open_dialog(folder=False))
        for act in (self.open_action, self.open_list_action):
            w.file_menu.addAction(act)
            self.panel.open_menu.addAction(act)
        self.demo_action = QAction("Open the Demo's &Held-out Set", w)
        self.demo_action.triggered.connect(lambda _c=False: self.open_demo_set())
        self.demo_action.setEnabled(False)
        w.help_menu.addAction(self.demo_action)
        self.next_action = self._nav("&Next Image in Data Set", ("J", "Ctrl+Down"), +1)
        self.previous_action = self._nav("&Previous Image in Data Set", ("K", "Ctrl+Up"), -1)

    def _nav(self, text: str, keys: tuple[str, ...], delta: int) -> QAction:
        act = QAction(text, self.window)
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(lambda _c=False: self.step(delta))
        self.window.view_menu.addAction(act)
        self.window.addAction(act)
        return act

    # -- opening ---------------------------------------------------------------------------------

    def open_dialog(self, folder: bool = True) -> None:
        """Ask for a data set folder (or a list or array file) and open it."""
        d, start = self.window.dialogs, self.controller.last_dir()
        path = d.folder("Open Data Set Folder", start) if folder else d.open_file("Open Data Set List", start, DATASET_FILTER)
        if path:
            self.open(path)

    def open(self, source: str | Path) -> int:
        """Open a data set (a folder, list or array file; ``"demo:NAME"`` a demo's held-out set)."""
        self.sink = None  # the rows of a run still going belong to the data set open now
        self.jobs.cancel(KIND)
        self.window.show_panel(TITLE)
        self._set_message(f"Opening {source}…")
        return self.jobs.submit(OPEN_KIND, open_job(str(source), self.app_dir))

    def demo_name(self) -> str | None:
        """The demo open in the window, when it has a held-out set."""
        demo = getattr(getattr(self.window, "tools", {}).get("demos"), "demo", None)
        score = getattr(demo, "score", None) or {}
        return demo.name if demo is not None and ("test_x" in score or "data" in score) else None

    def open_demo_set(self) -> int | None:
        name = self.demo_name()
        if name is None:
            self._set_message("Open a demo first (Help → Demos…): its held-out set is the one its score was measured on.")
            return None
        return self.open(f"demo:{name}")

    def _opened(self, opened: Opened) -> None:
        self.opened = opened
        self._entries = {e.key: e for e in opened.index.entries}
        self.thumbs.reset()
        self.panel.adapter.forget_pictures()
        self._open_key = None
        self.table.clear()
        self.table.set_classes(self.state.labels or opened.index.classes)
        index = opened.index
        self.panel.title.setText(f"<b>{index.name}</b> — {len(index)} images ({index.kind})"
                                 + (f"<br>{'; '.join(index.notes)}" if index.notes else ""))
        if opened.saved:
            self.table.add_rows([r for r in opened.saved if r.get("key") in self._entries])
            self.table.refresh_summary()
            self._show_summary()
            self._set_message(f"Saved results of an earlier run ({opened.table.name}).")
        if self.state.model_info is not None:
            self.run()
        elif not opened.saved:
            self._set_message("Open a model to score this data set.")
        self._ask_thumbs()

    # -- running ---------------------------------------------------------------------------------

    def run(self, rerun: bool = False) -> int | None:
        """Score the model on the open data set (unchanged images keep their saved rows)."""
        if self.opened is None:
            self._set_message("Open a data set first (File → Open Data Set…).")
            return None
        req = build_request(self.state, getattr(self.window, "tools", {}), self.opened.index, self.opened.table,
                            self.panel.ablation.isChecked(), self.panel.patches.isChecked())
        if isinstance(req, str):
            self._set_message(req)
            return None
        req.rerun = rerun
        if self.batch_size:
            req.batch_size = self.batch_size
        binarise = self._binarise()
        self._run_invert = bool(binarise.invert) if binarise is not None else None
        self.table.set_threshold(None)  # the new rows are scored at the threshold now set
        self.sink = RowSink()
        self.sink.thumbs = self.thumbs
        self.outcome = None
        self.table.clear()
        self._set_message(f"Scoring {len(self.opened.index)} images…")
        self._polls = 0
        self.timer.start()
        return self.jobs.submit(KIND, run_job(req, self.sink))

    def cancel(self) -> None:
        self.jobs.cancel(KIND)

    def poll(self) -> None:
        """Move the rows the run has made into the table; ask for the thumbnails in view."""
        sink = self.sink
        rows = sink.take() if sink is not None else []
        if rows:
            if sink is not None and sink.classes and self.table.classes != sink.classes:
                self.table.set_classes(sink.classes)
            self.table.add_rows(rows)
            self._polls += 1
            if self._polls % SUMMARY_EVERY == 1:
                self._refresh_summary()
        fresh = self.thumbs.take_fresh()
        if fresh:
            self.panel.adapter.thumbs_arrived(fresh)
        self._ask_thumbs()
        if not self.jobs.is_running(KIND) and not self.thumbs.pending():
            self.timer.stop()

    def _ask_thumbs(self) -> None:
        view = self.panel.view
        first = max(0, view.rowAt(0))
        last = view.rowAt(max(0, view.viewport().height() - 1))
        last = len(self.table.view) - 1 if last < 0 else last
        keys = [str(self.table.view_row(i).get("key")) for i in range(first, min(last + 1, len(self.table.view)))]
        entries = [self._entries[k] for k in keys if k in self._entries]
        if entries:
            self.thumbs.request(entries)
            if not self.timer.isActive():
                self.timer.start()

    def _finished(self, kind: str, result: Any) -> None:
        if kind == OPEN_KIND:
            self._opened(result)
            return
        self.poll()
        self.outcome = result
        self._refresh_summary()
        notes = " ".join(result.notes)
        text = f"{len(self.table.rows)} images: {result.scored} scored in {result.seconds:.1f} s"
        text += f", {result.reused} unchanged (their saved rows)." if result.reused else "."
        text += f" Not saved: {result.save_error}" if result.save_error else " Saved beside the data set."
        self._set_message(text + (f" {notes}" if notes else ""))

    def _failed(self, kind: str, message: str, _exc: Any) -> None:
        self.poll()
        what = "Cannot open the data set" if kind == OPEN_KIND else "The run failed"
        self._set_message(f"{what}: {message}")

    def _cancelled(self, kind: str) -> None:
        if kind == KIND:
            self.poll()
            self._refresh_summary()
            total = len(self.opened.index) if self.opened else 0
            self._set_message(f"Cancelled: {len(self.table.rows)} of {total} images done (kept and saved). "
                              "Run goes on from there.")

    def _stopped(self) -> None:
        """A run ended cancelled on the worker: its last rows are in (and saved)."""
        if not self.jobs.is_running(KIND) and self.sink is not None:
            self._cancelled(KIND)

    def _model_changed(self, info: Any) -> None:
        """Another model: the open data set is scored with it (its own saved rows are reused
        when it was scored before), once the window has proposed its input mapping."""
        self.jobs.cancel(KIND)
        if self.opened is not None and info is not None:
            self._set_message("Another model: scoring the data set with it…")
            QTimer.singleShot(0, lambda: self.run() if self.state.model_info is info else None)

    def _binarise(self) -> Any:
        return getattr(getattr(self.window, "tools", {}).get("binarise"), "model", None)

    def follow_threshold(self) -> None:
        """Show Dice and IoU at the Binarise threshold (read from each row's Dice curve), when
        the foreground's side is the run's; else at the run's threshold."""
        binarise = self._binarise()
        if binarise is None:
            return
        same_side = self._run_invert is None or bool(binarise.invert) == self._run_invert
        self.table.set_threshold(float(binarise.threshold) if same_side else None)
        if "binary" in self.table.summary:
            self._show_summary()

    def _refresh_summary(self) -> None:
        self.table.refresh_summary()
        self._show_summary()

    def _show_summary(self) -> None:
        t = self.table
        threshold = getattr(self._binarise(), "threshold", None) if "binary" in t.summary else None
        mean = t.shown_mean_dice() if any("dice_at" in r for r in t.rows) else None
        shown = (t.threshold, mean) if mean is not None and t.threshold is not None else None
        self.panel.aggregates.show_summary(t.summary, t.rows, t.classes, threshold, shown)

    def _set_message(self, text: str) -> None:
        self.panel.message.setText(text)

    # -- browsing --------------------------------------------------------------------------------

    def step(self, delta: int) -> str | None:
        """Open the next (``+1``) or previous (``-1``) image of the table's view."""
        key = self.table.step(delta)
        if key is not None:
            self.open_row(key)
        return key

    def open_row(self, key: str | None) -> bool:
        """Open the row ``key``'s image in every view, with its mask, reference and other inputs."""
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return False
        if self._open_key == (key, id(self.state.image)):
            return True  # open already
        try:
            self._open_entry(entry)
        except (MaskviewerError, OSError, ValueError) as exc:
            self.window.show_error("Cannot open this image", f"{entry.key}: {exc}")
            return False
        self._open_key = (key, id(self.state.image))
        return True

    def _open_entry(self, entry: Any) -> None:
        reader = self.thumbs.reader
        c = self.controller
        # read as a file is opened, but not added to Open Recent (browsing would flood it)
        c.show_image(reader.picture(entry.image), entry.key)
        image = self.state.image
        tools = getattr(self.window, "tools", {})
        for name, src in entry.inputs.items():
            other = reader.picture(src)
            c.extra_images[src.describe()] = other
            m = self.state.mappings.get(name, InputMapping())
            self.state.set_mapping(name, InputMapping.from_dict({**m.to_dict(), "source": f"file:{src.describe()}"}))
        masks = getattr(tools.get("masks"), "model", None)
        if entry.mask is not None and masks is not None and masks.maskset is not None:
            ms = masks.maskset
            ms.replace(reader.mask(entry.mask, (image.height, image.width)), label=f"Mask of {entry.key}")
            if ms.active is not None:  # the data set's mask, not painting to save
                ms.mark_saved(ms.active.name, entry.mask.describe())
                masks.flags_changed.emit()
        binarise = tools.get("binarise")
        if entry.reference is not None and binarise is not None:
            binarise.set_reference(reader.reference(entry.reference), f"reference of {entry.key}", image_mask=True)
        c.schedule_prediction()


def install(window: Any) -> DatasetTool:
    """Add the Data set page, File → Open Data Set… and the demo's held-out set."""
    tool = DatasetTool(window)
    binarise = tool._binarise()
    if binarise is not None:  # Dice and IoU follow the Binarise threshold (a drag's last value)
        binarise.threshold_changed.connect(lambda _skip: tool.follow_timer.start())
    window.help_menu.aboutToShow.connect(lambda: tool.demo_action.setEnabled(tool.demo_name() is not None))
    tool.state.model_changed.connect(lambda _i: tool.panel.demo_button.setEnabled(tool.demo_name() is not None))
    return tool
