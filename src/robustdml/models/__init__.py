"""Embedding models: images in [0,1] in, L2-normalised embeddings out.

Normalisation (mean/std) happens inside the model so that attacks clip to [0,1] and measure eps in
pixel units, exactly as the papers do.
"""

from robustdml.models.embedding import EmbeddingModel
from robustdml.models.factory import MODELS, build_model, model_options
from robustdml.models.mode import eval_mode

__all__ = ["EmbeddingModel", "MODELS", "build_model", "eval_mode", "model_options"]
