"""Robustness evaluation: the attack specification, the evaluation and its checks, the typed result and
the result store of run directories. Sits between ``engine/`` (run directories, loading a run) and
``reporting/`` (pages and tables); ``attacks/`` below it holds only the units (engines, objectives,
retrieval attacks, ensemble members)."""
