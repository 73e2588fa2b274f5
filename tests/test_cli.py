"""The command line: version, info on a model, refusals, bad files."""

from __future__ import annotations

import json
import subprocess
import sys

from maskviewer.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "maskviewer" in capsys.readouterr().out


def test_info_json(model_files, capsys):
    assert main(["info", str(model_files["three"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "functional"
    assert sorted(t["name"] for t in data["inputs"]) == ["density_a", "density_b", "rgb"]
    assert any(layer["name"] == "attention" for layer in data["layers"])


def test_info_text_shows_nested_layers(model_files, capsys):
    assert main(["info", str(model_files["nested"])]) == 0
    out = capsys.readouterr().out
    assert "backbone" in out and "inner_conv" in out and "(?, 14, 14, 4)" in out


def test_info_on_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.keras"
    bad.write_bytes(b"nope")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not a Keras model file" in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "maskviewer", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--model" in out.stdout and "--demo" in out.stdout


def test_info_names_token_grids_and_attention_heads(tmp_path, capsys):
    from tests import vit_zoo

    path = tmp_path / "vit.keras"
    vit_zoo.builtin_vit().save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "token layers and attention" in out
    assert "8×8 token grid + 1 extra token" in out and "2 attention heads" in out
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["transformer"]
    grids = [v["tokens"] for v in data.values() if "tokens" in v]
    assert all(g["grid"] == [8, 8] for g in grids)  # 32×32 pictures in 4×4 patches
    assert data["patch_tokens"]["tokens"]["tokens_dropped"] == 0 and data["tokens"]["tokens"]["tokens_dropped"] == 1
    assert any(v.get("heads", 0) > 0 for v in data.values())


def test_info_of_a_cnn_has_no_token_section(model_files, capsys):
    assert main(["info", str(model_files["nested"])]) == 0
    assert "token layers" not in capsys.readouterr().out
