"""Model registry: ``build_model(name, ...)`` -> :class:`EmbeddingModel`."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from robustdml.models.convnet import MLP, RC2F2, SmallConvNet
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


@MODELS.register("rc2f2")
def _rc2f2(input_shape: Sequence[int] = (1, 28, 28), embedding_dim: int = 512):
    """RobRank's 28px model (:class:`~robustdml.models.convnet.RC2F2`) with its 512-d embedding,
    L2-normalised (the reference's "N" losses), on raw [0,1] pixels: no input normalisation
    (mean 0, std 1), as the reference feeds them."""
    channels, height, width = input_shape
    if height != width:
        raise ValueError(f"rc2f2 expects square images, got input_shape={tuple(input_shape)}")
    backbone = RC2F2(in_channels=channels, input_size=height)
    return EmbeddingModel(backbone, backbone.output_dim, embedding_dim, mean=(0.0,) * channels, std=(1.0,) * channels)


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


def model_embedding_dim(name: str) -> int:
    """The embedding size model ``name`` builds by default (128 unless its builder says otherwise)."""
    import inspect

    default = inspect.signature(MODELS.get(name)).parameters.get("embedding_dim")
    return 128 if default is None or default.default is inspect.Parameter.empty else int(default.default)


def build_model(name: str, input_shape: Sequence[int], embedding_dim: Optional[int] = 128,
                **options) -> EmbeddingModel:
    """Build a registered model for inputs of ``input_shape`` (C,H,W) or (D,); ``embedding_dim=None``
    takes the model's own default (rc2f2: 512, as published); an option the model does not take is an
    error naming the ones it does."""
    check_known_options("model", name, options, model_options(name))
    if embedding_dim is None:
        return MODELS.get(name)(input_shape=tuple(input_shape), **options)
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    return MODELS.get(name)(input_shape=tuple(input_shape), embedding_dim=embedding_dim, **options)
