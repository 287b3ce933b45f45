"""Command-line conventions: --threads, -q/-v, warnings without robustdml's source line."""

import logging
import os
import warnings

import pytest
import torch

from robustdml import console
from robustdml.cli import build_parser, main


@pytest.fixture(autouse=True)
def restore_process_settings():
    threads = torch.get_num_threads()
    logger = logging.getLogger("robustdml")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    torch.set_num_threads(threads)
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


def test_threads_flag_sets_torchs_threads():
    torch.set_num_threads(2)
    assert main(["data", "--list", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1


def test_threads_default_is_the_cpus_this_process_may_use():
    torch.set_num_threads(1)
    assert main(["data", "--list"]) == 0
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    assert "--threads N" in build_parser().format_help()


def test_threads_below_one_is_a_user_error(capsys):
    assert main(["data", "--list", "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, level", [([], logging.INFO), (["-q"], logging.WARNING), (["-qq"], logging.ERROR),
                                         (["-v"], logging.DEBUG), (["-q", "-v"], logging.INFO)])
def test_quiet_and_verbose_set_the_robustdml_log_level(argv, level):
    assert main(["data", "--list", *argv]) == 0
    assert logging.getLogger("robustdml").level == level


def test_flags_work_before_and_after_the_command():
    assert main(["-q", "data", "--list"]) == 0
    assert logging.getLogger("robustdml").level == logging.WARNING
    args = build_parser().parse_args(["--threads", "3", "attack", "RUN", "-vv"])
    assert (args.threads, args.verbose, args.quiet) == (3, 2, 0)


def test_robustdml_warnings_print_without_their_source_line(capsys):
    console.configure(threads=1)
    from robustdml.evaluation import retrieval

    warnings.showwarning("queries have no same-class item", UserWarning, retrieval.__file__, 111)
    err = capsys.readouterr().err
    assert err == "warning: queries have no same-class item\n"


def test_other_packages_warnings_keep_pythons_format(capsys):
    console.configure(threads=1)
    warnings.showwarning("deprecated thing", DeprecationWarning, "/somewhere/else/lib.py", 7)
    assert "/somewhere/else/lib.py:7: DeprecationWarning: deprecated thing" in capsys.readouterr().err


def test_double_quiet_hides_robustdml_warnings(capsys):
    console.configure(quiet=2, threads=1)
    warnings.showwarning("hidden", UserWarning, console.__file__, 1)
    assert capsys.readouterr().err == ""
