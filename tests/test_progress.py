"""Progress: a tqdm bar on a terminal, one line per stage (no carriage returns) anywhere else."""

import io
import logging

import pytest
from tqdm import tqdm

from robustdml import progress
from robustdml.progress import StageLine, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def default_log_level():
    logger = logging.getLogger("robustdml")
    level = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(level)


def test_a_file_gets_one_line_per_stage_and_no_redraws():
    log = io.StringIO()
    bar = progress_bar(range(500), desc="epoch 1/2", unit="batch", file=log)
    assert isinstance(bar, StageLine)
    for _ in bar:
        bar.set_postfix(loss="0.1234")
    text = log.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1
    assert text.startswith("epoch 1/2: 500/500 batch in ") and text.endswith(", loss=0.1234\n")


def test_a_long_stage_adds_a_line_a_minute_with_an_eta(monkeypatch):
    clock = iter([0.0, 30.0, 61.0, 90.0, 125.0, 130.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    with progress_bar(total=4, desc="attacking", unit="query", file=log) as bar:
        for _ in range(4):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert lines == ["attacking: 2/4 query, about 1m01s left", "attacking: 4/4 query, about 0s left",
                     "attacking: 4/4 query in 2m10s"]


def test_a_short_transient_stage_writes_nothing_to_a_file():
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="embedding", leave=False, file=log):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_a_real_tqdm_bar():
    bar = progress_bar(range(3), desc="x", file=Terminal())
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


def test_quiet_hides_bars_and_disable_is_honoured():
    assert progress_bar(range(3), file=Terminal(), disable=True).disable
    logging.getLogger("robustdml").setLevel(logging.WARNING)
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="epoch", file=log):
        pass
    assert log.getvalue() == ""
