"""compute_embeddings: dataset order, eval mode (then restored), no autograd graph, all input kinds."""

import numpy as np
import pytest
import torch

from robustdml.evaluation import compute_embeddings


class TinyDataset(torch.utils.data.Dataset):
    """(image, label) items with a ``labels`` array, like the data layer's datasets."""

    def __init__(self, n=37, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 1, 6, 6, generator=generator)
        self.labels = np.arange(n) % 4

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


class FastDataset(TinyDataset):
    """Adds the fast whole-batch path; counts its calls so the test can see it was used."""

    batch_calls = 0

    def get_batch(self, indices):
        self.batch_calls += 1
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self.images[indices], torch.as_tensor(self.labels)[indices]

    def __getitem__(self, index):
        raise AssertionError("get_batch should be used instead of per-item access")


def _model():
    torch.manual_seed(0)
    # BatchNorm and dropout behave differently in train mode: outputs prove eval mode was used.
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.Dropout(0.5), torch.nn.Linear(16, 5))


@pytest.mark.parametrize("make_input", [
    lambda: TinyDataset(),
    lambda: FastDataset(),
    lambda: torch.utils.data.DataLoader(TinyDataset(), batch_size=5),
])
def test_embeds_every_item_in_order_in_eval_mode(make_input):
    model, data = _model(), make_input()
    model.train()
    embeddings, labels = compute_embeddings(model, data, batch_size=8, progress=False)
    assert model.training  # the caller's mode is restored
    images = TinyDataset().images
    model.eval()
    with torch.no_grad():
        expected = model(images)
    assert embeddings.dtype == torch.float32 and embeddings.shape == (37, 5)
    torch.testing.assert_close(embeddings, expected)
    assert labels.dtype == torch.long and labels.tolist() == (np.arange(37) % 4).tolist()
    assert not embeddings.requires_grad
    if isinstance(data, FastDataset):
        assert data.batch_calls == 5  # ceil(37 / 8)


def test_embeddings_can_serve_as_constant_attack_targets():
    # Inference-mode tensors would raise here ("cannot be saved for backward").
    model = _model()
    gallery, _ = compute_embeddings(model, TinyDataset(), progress=False)
    model.eval()
    images = TinyDataset().images[:3].clone().requires_grad_(True)
    loss = ((model(images) - gallery[:3]) ** 2 * gallery[:3]).sum()
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


def test_mode_is_restored_when_the_model_fails():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 2))  # wrong input size
    model.train()
    with pytest.raises(RuntimeError):
        compute_embeddings(model, TinyDataset(), progress=False)
    assert model.training


@pytest.mark.parametrize("data, kwargs, message", [
    (TinyDataset(n=0), {}, "empty"),
    (TinyDataset(), {"batch_size": 0}, "batch_size"),
])
def test_bad_inputs_fail_with_a_clear_message(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_embeddings(_model(), data, progress=False, **kwargs)


def test_model_returning_a_tuple_is_rejected():
    class TwoOutputs(torch.nn.Module):
        def forward(self, images):
            return images.flatten(1), images.flatten(1)

    with pytest.raises(ValueError, match=r"\[batch, dim\] embedding tensor"):
        compute_embeddings(TwoOutputs(), TinyDataset(), progress=False)


@pytest.mark.parametrize("scale,shift,fix", [(255.0, 0.0, "divide by 255"), (1.0, -0.5, "normalise inside")])
def test_images_outside_the_unit_range_are_refused_with_the_fix(scale, shift, fix):
    """What we found: `evaluate_robustness` on float images in 0..255 ran, clamped them to [0,1] and reported a
    huge "attack" effect."""
    from robustdml.robustness.spec import AttackSpec
    from robustdml.robustness.evaluate import evaluate_robustness
    from robustdml.data import TensorRetrievalDataset

    data = TensorRetrievalDataset(torch.rand(40, 1, 6, 6) * scale + shift, np.arange(40) % 4, name="raw")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4))
    with pytest.raises(ValueError, match=f"pixel values range over .*expects float pixels in \\[0,1\\].*{fix}"):
        compute_embeddings(model, data, progress=False)
    with pytest.raises(ValueError, match=fix):
        evaluate_robustness(model, data, AttackSpec(attacks=("nn",), eps=(0.1,), steps=1), progress=False)


def test_pixel_checks_name_dtype_shape_and_non_finite_values():
    from robustdml.data.checks import check_pixel_range

    check_pixel_range(torch.rand(2, 3, 4, 4), "ok")
    with pytest.raises(ValueError, match="uint8.*images.float\\(\\) / 255"):
        check_pixel_range(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "batch")
    with pytest.raises(ValueError, match="batch dimension"):
        check_pixel_range(torch.rand(5), "batch")
    with pytest.raises(ValueError, match="NaN"):
        check_pixel_range(torch.full((2, 2), float("nan")), "batch")
