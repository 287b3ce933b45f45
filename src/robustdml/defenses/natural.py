"""Natural (non-adversarial) training: the metric loss on clean embeddings."""

from __future__ import annotations

from robustdml.defenses.base import DEFENSES, Defense, StepOutput


@DEFENSES.register("natural")
class NaturalTraining(Defense):
    name = "natural"

    def step(self, model, images, labels, generator):
        embeddings = model(images)
        return StepOutput(loss=self.metric_loss(embeddings, labels), passes=1.0)
