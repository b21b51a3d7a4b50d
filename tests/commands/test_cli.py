import subprocess
import sys

import pytest

from lungcad.cli import VERB_MODULES, main


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in VERB_MODULES:
        assert f"    {verb}" in out
    assert "not a medical device" in out


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lungcad", "data", "check", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"lungcad data: error: dataset folder not found: {tmp_path / 'nowhere'}"
    assert "Traceback" not in result.stderr


def test_no_verb_prints_help(capsys):
    assert main([]) == 0
    assert "usage: lungcad" in capsys.readouterr().out
