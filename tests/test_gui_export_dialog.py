"""File → Export…: the dialog lists what was made (with previews), writes only the items ticked,
in the formats and scale chosen, into the folder chosen; its default folder is the user's, never
the installed package's; the File menu is grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from maskviewer.gui.dialogs import ScriptedDialogs
from maskviewer.gui.export_choice import default_folder, is_inside, package_roots
from maskviewer.io.export import iter_files, read_manifest
from tests.conftest import wait_prediction

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _open(qtbot, win, digit=3):
    win.controller.open_image(str(DEMO / f"digit_{digit}.png"))
    win.controller.open_model(str(DEMO / "digits_cnn.keras"))
    assert wait_prediction(qtbot, win) is not None


def _show_layer(qtbot, win, layer="conv2", method="mean"):
    tool = win.tools["layers"]
    win.show_panel("Layers")
    qtbot.waitUntil(lambda: layer in tool.entries and tool.panel.current_path() is not None, timeout=30_000)
    tool.select_layer(layer)
    tool.panel.set_method(method)
    tool.request()

    def shown():
        o = tool.outcome
        return o is not None and o.request.path == layer and o.request.method == method and not o.error

    qtbot.waitUntil(shown, timeout=30_000)


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_an_unpainted_mask_is_not_offered(window, qtbot):
    _open(qtbot, window)
    masks = window.tools["masks"]
    masks.ask_unsaved = lambda: "discard"
    assert masks.maskset.masks and not masks.maskset.active.data.any()  # there, but never painted
    export = window.tools["export"]
    assert all(item.kind != "mask" for item in export.items())
    dialog = export.make_dialog()
    assert all(item.kind != "mask" for item in dialog.items)
    assert not any(row.text().startswith("Mask") for row in dialog.rows())
    masks.maskset.rectangle(2, 2, 10, 10, 1.0)  # painted: now it is something to export
    offered = [item for item in export.items() if item.kind == "mask"]
    assert len(offered) == 1 and np.array_equal(offered[0].values, masks.maskset.active.data)
    dialog.deleteLater()


def test_writes_only_the_chosen_items_into_the_chosen_folder(window, qtbot, tmp_path):
    _open(qtbot, window)
    _show_layer(qtbot, window, "conv2", "mean")
    masks = window.tools["masks"]
    masks.ask_unsaved = lambda: "discard"
    masks.maskset.rectangle(3, 4, 12, 20, 1.0)
    export = window.tools["export"]
    offered = {item.kind for item in export.items()}
    assert {"activation", "mask"} <= offered
    default = Path(export.last_folder())
    existed = default.exists()
    chosen_dir = tmp_path / "chosen"

    def answer(dialog):  # only the layer map, PNG only, pictures 2×, into chosen_dir
        assert dialog.windowTitle() == "Export" and len(dialog.rows()) == len(dialog.items) >= 2
        assert all(not row.icon().isNull() for row in dialog.rows())  # every row has its preview
        dialog.check_only(lambda item: item.kind == "activation")
        dialog.set_formats("png")
        dialog.set_scale(2)
        dialog.set_folder(str(chosen_dir))

    window.dialogs = ScriptedDialogs(answer)
    export.action.trigger()
    assert window.dialogs.asked == [("run", "Export")]
    manifest = read_manifest(chosen_dir)
    assert [(e["kind"], e["layer"]) for e in manifest["artifacts"]] == [("activation", "conv2")]
    entry = manifest["artifacts"][0]
    listed = {rec["path"] for _role, rec in iter_files(entry)}
    assert _files_under(chosen_dir) == listed | {"manifest.json"}  # nothing else, no NPY
    assert all(p.endswith(".png") for p in listed)
    png = np.asarray(Image.open(chosen_dir / entry["png"]))
    assert png.shape == (56, 56, 4)  # the 28×28 image, twice
    assert default.exists() == existed  # nothing was written to the default folder
    # the choices are remembered for the next export
    again = export.remembered()
    assert (again.folder, again.formats, again.scale) == (str(chosen_dir), "png", 2)


def test_cancel_writes_nothing_and_browse_starts_in_the_current_folder(window, qtbot, tmp_path):
    _open(qtbot, window)
    _show_layer(qtbot, window, "conv3", "max")
    export = window.tools["export"]
    picked = tmp_path / "picked"

    def browse_then_cancel(dialog):
        dialog.set_folder(str(tmp_path / "start"))
        dialog.browse()  # asks window.dialogs.folder, answered from the queue below
        assert dialog.choice().folder == str(picked)
        return False  # Cancel

    window.dialogs = ScriptedDialogs(browse_then_cancel, str(picked))
    assert export.export_dialog() is None
    assert window.dialogs.asked == [("run", "Export"), ("folder", "Export into…")]
    assert not picked.exists() and not (tmp_path / "start").exists()


def test_default_folder_is_the_users_never_the_package(window, qtbot, tmp_path):
    export = window.tools["export"]
    roots = package_roots()
    # a folder remembered inside the package (the demo folder) is not used
    export.settings.setValue("export/last_dir", str(DEMO))
    folder = export.last_folder()
    assert not is_inside(folder, roots), folder
    assert Path(folder).name == "maskviewer" and Path(folder).parent.is_dir()
    # the pure rule: pictures first, then documents, skipping what is gone or inside the package
    pictures, documents = tmp_path / "Pictures", tmp_path / "Documents"
    documents.mkdir()
    assert default_folder(None, [str(pictures), str(documents)]) == str(documents / "maskviewer")
    pictures.mkdir()
    assert default_folder(str(DEMO), [str(pictures), str(documents)]) == str(pictures / "maskviewer")
    assert default_folder("", [str(DEMO), str(documents)]) == str(documents / "maskviewer")
    kept = tmp_path / "last"
    kept.mkdir()
    assert default_folder(str(kept), [str(pictures)]) == str(kept)  # the last export's folder
    assert is_inside(DEMO / "digits_cnn.keras", roots) and not is_inside(tmp_path, roots)


def test_file_menu_is_grouped(window):
    window.menus.group_file_menu()
    names = [None if a.isSeparator() else a.text().replace("&", "") for a in window.file_menu.actions()]
    groups: list[list[str]] = [[]]
    for name in names:
        if name is None:
            groups.append([])
        else:
            groups[-1].append(name)
    assert all(groups), names  # no empty group, no doubled separator
    assert groups[0][:2] == ["Open Image…", "Open Model…"]
    assert groups[1][0] == "Export…" and all(n.startswith("Export") for n in groups[1])
    assert groups[2] == ["Open Session…", "Save Session…"]
    assert groups[3] == ["Open Recent"] and groups[4] == ["Quit"]
    window.menus.group_file_menu()  # grouping again changes nothing
    assert [None if a.isSeparator() else a.text().replace("&", "") for a in window.file_menu.actions()] == names
