"""What an exact resume needs, and what it checks before a resumed run changes anything.

A checkpoint holds the global RNG states (libraries such as PML's miners draw from torch's, numpy's and
Python's global generators) as tensors and plain values, loadable with ``weights_only``.

:func:`checked_resume_state` loads ``checkpoints/last.pt`` (its digest is checked on load) and compares the
config stored in it with the run's config.yaml (:func:`config_differences`, the one comparison of
settings), before any report is retired or any row rewritten: a damaged checkpoint or a hand-edited
config.yaml (another lr, seed, embedding_dim) is refused naming the file or the fields, and the run
directory stays as it was.
"""

from __future__ import annotations

import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from robustdml.engine.checkpoint import load_checkpoint
from robustdml.engine.config import RESUME_SAFE_FIELDS, ConfigError, TrainConfig, config_differences, stored_config
from robustdml.engine.run_dir import RunDirectory


def capture_global_rng() -> Dict[str, Any]:
    """Global RNG states as tensors (loadable with weights_only), for an exact resume."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(position), "numpy_gauss": [int(has_gauss), float(cached)],
            "python": random.getstate()[1], "python_version": random.getstate()[0]}


def restore_global_rng(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_gauss"][0], state["numpy_gauss"][1]))
    random.setstate((state["python_version"], tuple(state["python"]), None))


def checked_resume_state(run: RunDirectory, saved: TrainConfig, required: bool) -> Optional[Dict[str, Any]]:
    """The state of ``run``'s last checkpoint, checked: its digest, and its stored config against ``saved`` (the
    run's config.yaml) outside RESUME_SAFE_FIELDS. None when the run has no checkpoint yet (it failed before its
    first one: it starts again from step 0) unless ``required`` (a finished run must have one).
    The run's checkpoints/ and tb/ must be real folders inside it."""
    run.subfolder("checkpoints")
    if run.tensorboard_dir.exists() or run.tensorboard_dir.is_symlink():
        run.subfolder("tb")
    path = run.last_checkpoint
    if not required and not path.exists():
        return None
    state = load_checkpoint(path)
    if isinstance(state.get("config"), dict):
        trained = stored_config(state["config"], source=f"checkpoint {path}")
        differences = config_differences(trained, saved, ignore=RESUME_SAFE_FIELDS + ("output",))
        if differences:
            raise ConfigError(f"{run.config_path} does not match the config stored in {path}: "
                              f"{', '.join(differences)} (checkpoint -> config.yaml); a resumed run computes what it "
                              "started computing: restore config.yaml, or start a new run with another --output")
    return state
