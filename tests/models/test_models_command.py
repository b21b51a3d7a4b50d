from lungcad.cli import main
from lungcad.models import list_models


def test_models_verb_lists_every_model_with_its_saliency_layer(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for info in list_models():
        line = next(line for line in out.splitlines() if line.startswith(info.name + " "))
        assert info.target_layer in line
        assert f"{info.input_size}x{info.input_size}" in line
    assert "0.28M" in out  # paper-cnn-lstm's parameter count, from the network itself
