"""Certify a smoothed embedding model and attack the same smoothed model: the bracket
[certified lower bound, attacked upper bound] of its robust R@1 and mAP@R at each l2 radius.

1. Gallery: every test item's unit vector of the Monte Carlo mean of g (``gallery_samples`` draws),
   stored once; the attacker moves queries only.
2. Queries: ``max_queries`` test items drawn with ``seed`` exactly as the robustness evaluation draws
   them; g at each by ``samples`` draws; the certificate of :mod:`robustdml.certify.bounds` at
   confidence ``confidence`` (union bound over the queries).
3. Attack: :mod:`robustdml.certify.attack` at each radius; the adversarial query judged by a fresh
   estimate of g with ``samples`` draws.

Cost is counted in forward passes of the base model per query (forward+backward for the attack).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from robustdml.attacks.context import load_images
from robustdml.certify.attack import AttackSettings, attack_batch, margin_targets
from robustdml.certify.bounds import (certified_fraction, certify_query, largest_certifiable_radius,
                                      mean_error_bound)
from robustdml.certify.smoothing import check_sigma, monte_carlo_mean
from robustdml.evaluation.retrieval import retrieval_metrics
from robustdml.progress import progress_bar


@dataclass
class CertifySettings:
    """Everything that determines a certification (and its folder name)."""

    sigma: float = 0.25
    radii: Tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    samples: int = 1000             # noise draws per query for the certificate and for judging an attack
    confidence: float = 0.999       # the whole table holds with this probability (over the noise draws)
    gallery_samples: int = 32       # noise draws per gallery item (its stored vector)
    max_queries: Optional[int] = 200
    seed: int = 0
    attack: AttackSettings = field(default_factory=AttackSettings)

    def __post_init__(self):
        self.sigma = check_sigma(self.sigma)
        radii = tuple(float(r) for r in self.radii)
        if not radii or any(math.isnan(r) or r < 0 for r in radii):
            raise ValueError(f"radii must be l2 radii >= 0 in pixel units, e.g. 0,0.25,0.5; got {self.radii!r}")
        self.radii = tuple(sorted(set(radii)))
        for name in ("samples", "gallery_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.999; got {self.confidence!r}")
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError(f"max_queries must be >= 1 (or None for all), got {self.max_queries!r}")
        if isinstance(self.attack, dict):
            self.attack = AttackSettings(**self.attack)

    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"sigma{self.sigma:g}-n{self.samples}-conf{self.confidence:g}-seed{self.seed}-{digest}"


def certified_queries(size: int, max_queries: Optional[int], seed: int) -> np.ndarray:
    """The sorted test indices certified: the same draw as the robustness evaluation's attacked
    queries for the same seed, so both can be read side by side."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[:max_queries] if max_queries else order)


@dataclass
class CertifyReport:
    """What a certification measured; ``to_dict`` is certify.json. ``rows``: one per radius;
    ``per_query``: each query's index and certified margin (its certified radius follows from it)."""

    rows: List[Dict[str, object]]
    settings: Dict[str, object]
    per_query: Dict[str, list]

    def to_dict(self) -> Dict[str, object]:
        return {"rows": self.rows, "settings": self.settings, "per_query": self.per_query}

    def to_markdown(self) -> str:
        s = self.settings
        lines = [f"Smoothed model: Gaussian noise sigma {s['sigma']:g} (pixel units, l2), {s['queries']} queries "
                 f"against {s['gallery']} gallery items; certificate with {s['samples']} noise draws per query at "
                 f"confidence {s['confidence']:g} for the whole table (Monte Carlo error bound {s['error']:.4f}; "
                 f"nothing is certifiable beyond radius {s['largest_certifiable_radius']:.3f}).",
                 f"Attack: {s['attack_text']}.", "",
                 "| l2 radius | R@1 [certified, attacked] | mAP@R [certified, attacked] | passes/query "
                 "(certify + attack) |", "| --- | --- | --- | --- |"]
        for row in self.rows:
            lines.append(f"| {row['radius']:g} | [{100 * row['certified_R@1']:.1f}, {100 * row['attacked_R@1']:.1f}] "
                         f"| [{100 * row['certified_mAP@R']:.1f}, {100 * row['attacked_mAP@R']:.1f}] | "
                         f"{row['certify_passes_per_query']:.0f} + {row['attack_passes_per_query']:.0f} |")
        lines += ["", f"Gallery: {s['gallery_samples']} noise draws per item ({s['gallery_passes_per_query']:.0f} "
                      "passes per query when spread over the queries). Both numbers hold for the SMOOTHED model "
                      "only (not the base model), for l2 perturbations of the query."]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "certify.json").write_text(json.dumps(self.to_dict(), indent=2, default=float) + "\n")
        (folder / "certify.md").write_text(self.to_markdown())
        return folder


def _embed_gallery(model, dataset, settings: CertifySettings, device, batch_size: int, progress: bool):
    generator = torch.Generator().manual_seed(settings.seed)
    vectors = []
    for start in progress_bar(range(0, len(dataset), batch_size), desc="smoothing the gallery", disable=not progress,
                      leave=False):
        images = load_images(dataset, np.arange(start, min(start + batch_size, len(dataset)))).to(device)
        vectors.append(monte_carlo_mean(model, images, settings.sigma, settings.gallery_samples, generator).cpu())
    return torch.nn.functional.normalize(torch.cat(vectors), dim=-1)


def _metrics(estimates: torch.Tensor, labels: np.ndarray, queries: np.ndarray, gallery: torch.Tensor):
    found = retrieval_metrics(torch.nn.functional.normalize(estimates, dim=-1).numpy(), labels[queries],
                              gallery.numpy(), labels, exclude_index=queries, ks=(1,), per_query=True)
    return found["correct@1"], found["ap@r"]


def certify_model(model: torch.nn.Module, dataset, settings: Optional[CertifySettings] = None, device="cpu",
                  batch_size: int = 64, progress: bool = True) -> CertifyReport:
    """Certify and attack the smoothed ``model`` on ``dataset`` (its test split) as ``settings`` say."""
    settings = CertifySettings() if settings is None else settings
    device = torch.device(device)
    model = model.to(device)
    started = time.perf_counter()
    labels = np.asarray(dataset.labels)
    gallery = _embed_gallery(model, dataset, settings, device, batch_size, progress)
    queries = certified_queries(len(labels), settings.max_queries, settings.seed)
    error = mean_error_bound(settings.samples, (1 - settings.confidence) / len(queries))
    draws = torch.Generator().manual_seed(settings.seed + 1)
    attack_draws = torch.Generator().manual_seed(settings.seed + 2)
    estimates, margins, ap_lower = [], [], []
    correct = {r: [] for r in settings.radii}
    ap = {r: [] for r in settings.radii}
    attack_passes = {r: [] for r in settings.radii}
    for start in progress_bar(range(0, len(queries), batch_size), desc="certifying", disable=not progress, leave=False):
        batch = queries[start:start + batch_size]
        images = load_images(dataset, batch).to(device)
        estimate = monte_carlo_mean(model, images, settings.sigma, settings.samples, draws).cpu()
        estimates.append(estimate)
        for row, index in enumerate(batch):
            same = labels == labels[index]
            positives = np.flatnonzero(same & (np.arange(len(labels)) != index))
            certificate = certify_query(estimate[row], gallery, torch.as_tensor(positives),
                                        torch.as_tensor(np.flatnonzero(~same)), error, settings.sigma, settings.radii)
            margins.append(certificate.margin)
            ap_lower.append(certificate.ap_lower)
        hit, precision = _metrics(estimate, labels, batch, gallery)
        targets = margin_targets(estimate, gallery, labels, labels[batch], batch, settings.attack.candidates)
        for radius in settings.radii:
            if radius > 0:
                adversarial, passes = attack_batch(model, images, [t.to(device) for t in targets], settings.sigma,
                                                   radius, settings.attack, attack_draws)
                judged = monte_carlo_mean(model, adversarial, settings.sigma, settings.samples, attack_draws).cpu()
                new_hit, new_precision = _metrics(judged, labels, batch, gallery)
                hit, precision = hit & new_hit, np.fmin(precision, new_precision)
                passes = passes + settings.samples
            else:
                passes = np.zeros(len(batch))
            correct[radius].append(hit)
            ap[radius].append(precision)
            attack_passes[radius].append(passes)
    margins, ap_lower = np.array(margins), np.stack(ap_lower)
    rows = []
    for column, radius in enumerate(settings.radii):
        rows.append({"radius": radius, "certified_R@1": certified_fraction(margins, radius, settings.sigma),
                     "attacked_R@1": float(np.concatenate(correct[radius]).mean()),
                     "certified_mAP@R": float(np.nanmean(ap_lower[:, column])),
                     "attacked_mAP@R": float(np.nanmean(np.concatenate(ap[radius]))),
                     "certify_passes_per_query": float(settings.samples),
                     "attack_passes_per_query": float(np.concatenate(attack_passes[radius]).mean())})
    info = {**asdict(settings), "queries": len(queries), "gallery": len(labels), "error": error,
            "largest_certifiable_radius": largest_certifiable_radius(settings.sigma, error),
            "attack_text": settings.attack.describe(), "key": settings.key(),
            "gallery_passes_per_query": settings.gallery_samples * len(labels) / len(queries),
            "seconds": time.perf_counter() - started}
    return CertifyReport(rows=rows, settings=info,
                         per_query={"query_index": queries.tolist(), "margin": [round(float(m), 6) for m in margins]})


def certify_run(run_dir, settings: CertifySettings, checkpoint: str = "best", device: str = "auto",
                progress: bool = True) -> Tuple[Path, CertifyReport]:
    """Certify a trained run; the result goes to ``RUN/certify/<checkpoint>-<weights digest>-<settings key>/``
    and is reused when that folder already holds it."""
    from robustdml.engine.evaluate import load_run
    from robustdml.engine.run_dir import lock_run_dir

    with lock_run_dir(run_dir):
        loaded = load_run(run_dir, checkpoint=checkpoint, device=device)
        weights = Path(loaded.describe()["checkpoint_file"])
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
        folder = Path(run_dir) / "certify" / f"{weights.stem}-{digest}-{settings.key()}"
        if (folder / "certify.json").is_file():
            saved = json.loads((folder / "certify.json").read_text())
            return folder, CertifyReport(saved["rows"], saved["settings"], saved["per_query"])
        report = certify_model(loaded.model, loaded.splits.test, settings, device=loaded.device,
                               batch_size=loaded.config.eval_batch_size, progress=progress)
        report.settings.update({"run": str(run_dir), **loaded.describe()})
        report.write(folder)
    return folder, report
