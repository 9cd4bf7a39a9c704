"""pytest's settings for the whole repository: the unit tests in tests/ and the four notebooks run by nbval.

Quick mode is the default: ``FKP_QUICK=1`` is set before any notebook kernel starts (kernels inherit the
environment), so the notebooks use small subsets and a tiny training run and the suite takes minutes on a 2-core
CPU. ``python -m pytest --full`` runs the notebooks as a student does, full training included (it also unsets
``CI``, which the notebooks read as quick mode too).

Each notebook cell may run for ``QUICK_CELL_TIMEOUT`` seconds in quick mode and ``FULL_CELL_TIMEOUT`` in full mode;
``--nbval-cell-timeout SECONDS`` sets another limit. Once a cell has timed out, the notebook's later cells are
skipped with one line saying so (nbval would run them and report them as expected failures that pass).
"""
from __future__ import annotations

import os
import shlex

import pytest

# The slowest quick-mode cell took 20 s on the project's 2-core machine while it was loaded far beyond its cores
# (load average 9-10); ten minutes leave room for a slower machine and still stop a cell that trains in full.
QUICK_CELL_TIMEOUT = 600.0
# Notebook 2's full training is one cell of at most 15 minutes on a quiet 2-core CPU; an hour leaves room for a busy
# machine.
FULL_CELL_TIMEOUT = 3600.0
CELL_TIMEOUT_OPTION = "--nbval-cell-timeout"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help=f"run the notebooks in full mode, as a student does (full training; cells may take up to {FULL_CELL_TIMEOUT:.0f} s); "
        f"default: quick mode (FKP_QUICK=1, cells up to {QUICK_CELL_TIMEOUT:.0f} s)",
    )


def cell_timeout_given(config: pytest.Config) -> bool:
    """Whether ``--nbval-cell-timeout`` was given: on the command line, in ``PYTEST_ADDOPTS`` or in the ini's addopts."""
    words = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.getini("addopts")]
    return any(str(word).split("=", 1)[0] == CELL_TIMEOUT_OPTION for word in words)


def pytest_configure(config: pytest.Config) -> None:
    full = config.getoption("--full")
    if full:
        os.environ.pop("FKP_QUICK", None)
        os.environ.pop("CI", None)
    else:
        os.environ["FKP_QUICK"] = "1"
    if hasattr(config.option, "nbval_cell_timeout") and not cell_timeout_given(config):
        config.option.nbval_cell_timeout = FULL_CELL_TIMEOUT if full else QUICK_CELL_TIMEOUT


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a notebook's cells after one of its cells timed out (nbval's ``timed_out``), instead of running them."""
    notebook = item.parent
    if getattr(notebook, "timed_out", False):
        pytest.skip(f"{notebook.name}: an earlier cell timed out, so the later cells were not run")
