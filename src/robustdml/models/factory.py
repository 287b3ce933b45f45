"""Model registry: ``build_model(name, ...)`` -> :class:`EmbeddingModel`."""

from __future__ import annotations

from typing import Any, Dict, Sequence

from robustdml.models.convnet import MLP, SmallConvNet
from robustdml.models.embedding import EmbeddingModel
from robustdml.registry import Registry, builder_options, check_known_options

MODELS: Registry = Registry("model")

# Fashion-MNIST statistics; a fine default for any single-channel 28px set.
GRAYSCALE_MEAN = (0.2860,)
GRAYSCALE_STD = (0.3530,)


def _require_dims(name: str, input_shape: Sequence[int], dims: int, what: str) -> None:
    if len(input_shape) != dims:
        raise ValueError(f"model {name!r} takes {what}, but the data has items of shape {tuple(input_shape)}; "
                         "choose a model for this data with --model")


@MODELS.register("convnet")
def _convnet(input_shape: Sequence[int] = (1, 28, 28), embedding_dim: int = 128, hidden_dim: int = 512,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    _require_dims("convnet", input_shape, 3, "images [channels, height, width]")
    channels, height, _width = input_shape
    backbone = SmallConvNet(in_channels=channels, input_size=height, hidden_dim=hidden_dim)
    mean = mean or GRAYSCALE_MEAN * channels
    std = std or GRAYSCALE_STD * channels
    return EmbeddingModel(backbone, backbone.output_dim, embedding_dim, mean, std)


@MODELS.register("mlp")
def _mlp(input_shape: Sequence[int] = (2,), embedding_dim: int = 2, hidden_dim: int = 64):
    _require_dims("mlp", input_shape, 1, "vectors [features]")
    (dim,) = input_shape
    backbone = MLP(dim, hidden_dim)
    return EmbeddingModel(backbone, backbone.output_dim, embedding_dim, mean=(0.5,), std=(0.25,))


def _resnet(arch: str):
    def build(input_shape: Sequence[int] = (3, 224, 224), embedding_dim: int = 128,
              pretrained: str = "imagenet", freeze_bn: bool = True):
        from robustdml.models.resnet import IMAGENET_MEAN, IMAGENET_STD, FrozenBatchNormResNet

        _require_dims(arch, input_shape, 3, "images [channels, height, width]")
        if input_shape[0] != 3:
            raise ValueError(f"{arch} expects 3-channel images, got input_shape={tuple(input_shape)}")
        backbone = FrozenBatchNormResNet(arch, pretrained=pretrained, freeze_bn=freeze_bn)
        return EmbeddingModel(backbone, backbone.output_dim, embedding_dim, IMAGENET_MEAN, IMAGENET_STD)

    return build


MODELS.add("resnet18", _resnet("resnet18"))
MODELS.add("resnet50", _resnet("resnet50"))


def model_options(name: str) -> Dict[str, Any]:
    """The options (beyond input_shape and embedding_dim) model ``name`` accepts, with their defaults."""
    return builder_options(MODELS.get(name), exclude=("input_shape", "embedding_dim"))


def build_model(name: str, input_shape: Sequence[int], embedding_dim: int = 128, **options) -> EmbeddingModel:
    """Build a registered model for inputs of ``input_shape`` (C,H,W) or (D,); an option the model does
    not take is an error naming the ones it does."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    check_known_options("model", name, options, model_options(name))
    return MODELS.get(name)(input_shape=tuple(input_shape), embedding_dim=embedding_dim, **options)
