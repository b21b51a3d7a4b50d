"""``lungcad serve``: options reach the app and uvicorn; bad options are one-line errors."""

from __future__ import annotations

import pytest

from lungcad.cli import build_parser, main


@pytest.fixture()
def fake_uvicorn(monkeypatch):
    """Capture what `lungcad serve` would run instead of listening on a port."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_binds_to_loopback_by_default(binary_model_dir, fake_uvicorn, capsys):
    assert main(["serve", str(binary_model_dir), "--threads", "1"]) == 0
    app, options = fake_uvicorn[0]
    assert options["host"] == "127.0.0.1" and options["port"] == 8000
    assert list(app.state.served) == ["test-ct-binary"]
    settings = app.state.settings
    assert settings.max_upload_bytes == 64 * 1024 * 1024 and settings.runtime == "torch"
    assert "not a medical device" in capsys.readouterr().err


def test_serve_options_reach_the_settings(binary_model_dir, multiclass_model_dir, fake_uvicorn,
                                          capsys):
    assert main(["serve", str(binary_model_dir), str(multiclass_model_dir), "--host", "0.0.0.0",
                 "--port", "9123", "--max-upload-mb", "2.5", "--max-pixels", "5000000",
                 "--threads", "1", "--header-timeout", "2.5"]) == 0
    app, options = fake_uvicorn[0]
    assert app.state.settings.header_timeout_s == 2.5
    assert options["http"].header_timeout_s == 2.5  # uvicorn runs the protocol with the deadline
    assert (options["host"], options["port"]) == ("0.0.0.0", 9123)
    assert list(app.state.served) == ["test-ct-binary", "test-ct-3class"]
    assert app.state.settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert app.state.settings.max_pixels == 5_000_000
    assert "reachable from other machines" in capsys.readouterr().err


def test_serve_without_models_or_bundled_ones_says_what_to_do(monkeypatch, fake_uvicorn, capsys):
    import lungcad.model_dir

    monkeypatch.setattr(lungcad.model_dir, "bundled_models", lambda: [])
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "no bundled models are installed; pass a model directory" in err
    assert not fake_uvicorn


def test_serve_unknown_model_is_a_one_line_error(tmp_path, fake_uvicorn, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lungcad serve: error:") and "not a model directory" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--max-upload-mb", "0"], "--max-upload-mb must be positive"),
    (["--max-pixels", "0"], "max_pixels must be a positive integer"),
    (["--port", "70000"], "port must be between 0 and 65535"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_serve_bad_options(binary_model_dir, fake_uvicorn, capsys, args, message):
    assert main(["serve", str(binary_model_dir), *args]) == 2
    assert message in capsys.readouterr().err
    assert not fake_uvicorn


def test_runtime_and_threads_reach_the_loaded_model(binary_model_dir, monkeypatch, tmp_path,
                                                   fake_uvicorn):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path))
    assert main(["serve", str(binary_model_dir), "--runtime", "onnx", "--threads", "1"]) == 0
    app, _ = fake_uvicorn[0]
    assert app.state.settings.runtime == "onnx" and app.state.settings.threads == 1
    served = app.state.served["test-ct-binary"]
    assert served.describe()["runtime"] == "onnx"
    assert served.model.session.get_session_options().intra_op_num_threads == 1


def test_port_in_use_is_a_one_line_error(binary_model_dir, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(binary_model_dir), "--port", str(port), "--threads", "1",
                     "--log-level", "critical"]) == 2
    assert (f"lungcad serve: error: the server could not run on 127.0.0.1:{port}"
            in capsys.readouterr().err)
