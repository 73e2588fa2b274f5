"""The Qt application: main window, panels, the controller and the inference worker."""
