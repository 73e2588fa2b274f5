"""Starting the application: QApplication, the window first, then the backend on its thread."""

from __future__ import annotations

import os
import sys

from maskviewer.core.errors import MaskviewerError


def make_settings(path: str | None = None):
    """QSettings from ``path`` (an INI file), ``MASKVIEWER_SETTINGS``, or the user's default."""
    from PySide6.QtCore import QSettings

    path = path or os.environ.get("MASKVIEWER_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("maskviewer", "maskviewer")


def create_window(settings=None, start_backend: bool = True):
    """Build the controller and main window (used by the app and by tests)."""
    from maskviewer.gui.controller import Controller
    from maskviewer.gui.main_window import MainWindow

    controller = Controller(settings if settings is not None else make_settings())
    window = MainWindow(controller)
    if start_backend:
        controller.start()
    return window


def run_app(
    image: str | None = None,
    model: str | None = None,
    custom_objects: list[str] | None = None,
    trust: bool = False,
    demo: str | None = None,
) -> int:
    """Show the window at once, start the backend, then open what the command line named."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("maskviewer")
    app.setApplicationName("maskviewer")
    window = create_window(start_backend=False)
    window.show()

    def after_shown() -> None:
        controller = window.controller
        controller.start()  # imports TensorFlow on the inference thread
        try:
            if demo == "":  # --demo without a name: the gallery
                from maskviewer.gui.demo_gallery import demo_tool

                demo_tool(window).show_gallery()
            elif demo is not None:
                from maskviewer.gui.demo_gallery import open_demo

                open_demo(window, demo)
            if image:
                window.open_path(image)
            if model:
                controller.open_model(model, custom_objects, trust=trust)
        except MaskviewerError as exc:
            window.show_error("Cannot open", str(exc))

    QTimer.singleShot(0, after_shown)
    if os.environ.get("MASKVIEWER_QUIT_AFTER_SHOWN"):  # the startup benchmark
        def shown() -> None:
            print("SHOWN", flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(0, shown)
    return app.exec()
