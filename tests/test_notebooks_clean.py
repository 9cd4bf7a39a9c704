"""The notebooks at the repository root are committed clean: no outputs, no execution counts, no run state.

Outputs make diffs unreadable and carry stale numbers and pictures; clear them before committing with
``jupyter nbconvert --clear-output --inplace *.ipynb`` (and check that no widget state is left in the metadata).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(REPO_DIR.glob("*.ipynb"))
# Metadata a run leaves behind: widget state in the notebook, timing in the cells.
RUN_STATE_NOTEBOOK_KEYS = ("widgets",)
RUN_STATE_CELL_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled")


def problems(notebook: dict) -> list[str]:
    """What keeps a parsed notebook (nbformat 4 JSON) from being clean, one line per problem."""
    found = [f"notebook metadata has {key!r}" for key in RUN_STATE_NOTEBOOK_KEYS if key in notebook.get("metadata", {})]
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        where = f"cell {number} ({cell.get('cell_type')})"
        if cell.get("cell_type") == "code":
            if cell.get("outputs"):
                found.append(f"{where} has {len(cell['outputs'])} output(s)")
            if cell.get("execution_count") is not None:
                found.append(f"{where} has execution_count {cell['execution_count']}")
        found += [f"{where} metadata has {key!r}" for key in RUN_STATE_CELL_KEYS if key in cell.get("metadata", {})]
    return found


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, f"expected the four course notebooks at {REPO_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook.get("nbformat") == 4, f"{path.name} is not an nbformat 4 notebook"
    found = problems(notebook)
    assert not found, f"{path.name} is not clean: " + "; ".join(found) + (
        f". Run `jupyter nbconvert --clear-output --inplace {path.name}`."
    )


def test_problems_are_detected():
    dirty = {
        "metadata": {"widgets": {}},
        "cells": [
            {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream", "text": "hi"}],
             "metadata": {"execution": {}}, "source": "print('hi')"},
            {"cell_type": "markdown", "metadata": {}, "source": "text"},
            {"cell_type": "code", "execution_count": None, "outputs": [], "metadata": {}, "source": "x = 1"},
        ],
    }
    assert problems(dirty) == [
        "notebook metadata has 'widgets'",
        "cell 1 (code) has 1 output(s)",
        "cell 1 (code) has execution_count 3",
        "cell 1 (code) metadata has 'execution'",
    ]
