"""One run = one directory: config.yaml, checkpoints/, metrics.jsonl, tb/ (TensorBoard), plots."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


class RunDirectory:
    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    LAST = "checkpoints/last.pt"
    BEST = "checkpoints/best.pt"

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, output: Optional[str], name_parts: List[str], root: str = "runs") -> "RunDirectory":
        if output:
            path = Path(output)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path(root) / "-".join([stamp] + name_parts)
        path.mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        path = Path(path)
        if not (path / cls.CONFIG).is_file():
            raise FileNotFoundError(f"{path} is not a run directory: {path / cls.CONFIG} is missing")
        return cls(path)

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def last_checkpoint(self) -> Path:
        return self.path / self.LAST

    @property
    def best_checkpoint(self) -> Path:
        return self.path / self.BEST

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    def log_metrics(self, record: Dict[str, Any]) -> None:
        """Append one JSON line; flushed at once so a crash loses nothing already logged."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path / self.METRICS, "a") as handle:
            handle.write(json.dumps(clean) + "\n")

    def read_metrics(self) -> List[Dict[str, Any]]:
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_json(self, name: str, payload: Dict[str, Any]) -> Path:
        target = self.path / name
        target.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return target
