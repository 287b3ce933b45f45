"""The package as a user meets it: version, public API, optional dependencies."""

import subprocess
import sys

import numpy as np
import pytest

import robustdml
from robustdml.cli import main
from robustdml.evaluation import faiss_backend, knn, nmi


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"robustdml {robustdml.__version__}"


def test_version_matches_the_installed_metadata_when_installed_from_this_tree():
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("robustdml")
    except PackageNotFoundError:
        pytest.skip("robustdml is not installed (source tree on PYTHONPATH only)")
    assert installed == robustdml.__version__


def test_every_public_name_resolves_and_is_documented():
    assert "evaluate_robustness" in robustdml.__all__ and "AttackSpec" in robustdml.__all__
    for name in robustdml.__all__:
        value = getattr(robustdml, name)
        if callable(value) and name != "__version__":
            assert value.__doc__, f"robustdml.{name} has no docstring"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        robustdml.nope


def test_importing_the_package_does_not_import_torch():
    code = "import sys, robustdml; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_py_typed_marker_ships_with_the_package():
    from importlib.resources import files

    assert files("robustdml").joinpath("py.typed").is_file()


@pytest.fixture
def without_faiss(monkeypatch):
    monkeypatch.setattr(faiss_backend, "faiss", None)


def test_knn_without_faiss_equals_faiss(without_faiss):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 8)).astype(np.float32)
    gallery[10] = gallery[20]  # an exact tie: broken by gallery index, as faiss's CPU index does
    queries = np.concatenate([rng.normal(size=(40, 8)).astype(np.float32), gallery[10:11]])
    distances, indices = knn(queries, gallery, k=7, exclude_index=None)
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexFlatL2(8)
    index.add(gallery)
    expected_d, expected_i = index.search(queries, 7)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)
    assert list(indices[-1, :2]) == [10, 20]


def test_nmi_without_faiss_uses_scikit_learn_kmeans(without_faiss):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    embeddings = (np.eye(3)[labels] * 5 + rng.normal(scale=0.1, size=(150, 3))).astype(np.float32)
    assert nmi(embeddings, labels) == pytest.approx(1.0)


def test_faiss_gpu_placement_names_the_missing_faiss(without_faiss):
    with pytest.raises(ValueError, match="faiss is not installed"):
        faiss_backend.set_placement("gpu")


def test_training_without_tensorboard_warns_once_and_writes_no_events(monkeypatch, tmp_path):
    import builtins

    from robustdml.engine.events import NoEvents, event_writer

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("TensorBoard logging requires TensorBoard version 1.15 or above")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.warns(UserWarning, match=r"robustdml\[tensorboard\]"):
        writer = event_writer(tmp_path / "tb")
    assert isinstance(writer, NoEvents)
    writer.add_scalar("train/loss", 1.0, 3)
    writer.close()
    assert not (tmp_path / "tb").exists()
