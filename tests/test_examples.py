"""The examples in examples/ run as documented and measure something real."""

import importlib.util
from pathlib import Path

import torch

from conftest import needs_fashion_mnist

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_fashion_mnist
def test_robustness_of_your_model_attacks_an_outside_model_and_loads_its_weights(tmp_path, capsys):
    example = _load("robustness_of_your_model")
    weights = tmp_path / "mine.pt"
    torch.save(example.build_my_model(None).state_dict(), weights)
    report = example.main(["--weights", str(weights), "--per-class", "30", "--queries", "60", "--steps", "5"])
    robust = {eps: entry.r1.value for eps, entry in report.worst_case.items()}
    assert set(robust) == {0.01, 0.05, 0.1}
    assert robust[0.1] < report.clean.value - 0.2  # even a random convnet's retrieval breaks under attack
    assert "| auto | 0.1 |" in capsys.readouterr().out
