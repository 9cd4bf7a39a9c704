"""Tests for course.grade: a release with the solutions pasted in earns every point, the bare release none for its
unsolved checks, and a broken or endless submission cannot stop the others.

The grading run is the expensive part (it runs the four notebooks of two submissions in quick mode), so it runs
once for the module, two submissions at a time.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course import grade
import course.release

REPO_DIR = Path(__file__).resolve().parents[1]
STUDENT_MODULES = ("data_load.py", "models.py", "pipeline/training.py", "filters.py")


def paste_solutions(release: Path, target: Path) -> None:
    """A copy of the release with the instructors' solutions pasted in: the modules, and each solution cell."""
    shutil.copytree(release, target)
    for module in STUDENT_MODULES:
        shutil.copy2(REPO_DIR / module, target / module)
    for name in grade.NOTEBOOKS:
        solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(REPO_DIR / name, as_version=4).cells
                     if c.metadata.get("nbgrader", {}).get("solution")}
        notebook = nbformat.read(target / name, as_version=4)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in solutions:
                cell.source = solutions[grade_id]
        nbformat.write(notebook, target / name)


def read_table(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[Path, list[grade.Check]]:
    root = tmp_path_factory.mktemp("grading")
    release = root / "release"
    course.release.make_release(release, repo_url="https://github.com/acme/keypoints-course")
    submissions = root / "submissions"
    submissions.mkdir()
    paste_solutions(release, submissions / "solved")
    shutil.copytree(release, submissions / "bare")
    out = root / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "course.grade", str(submissions), "--out", str(out), "--jobs", "2",
                           "--timeout", "900", "--cell-timeout", "600"], cwd=REPO_DIR, capture_output=True, text=True, timeout=1000)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, grade.course_checks()


def test_solutions_pasted_in_earn_every_point(graded):
    out, checks = graded
    table, details = read_table(out), read_table(out.with_name("grades.details.csv"))
    assert set(table) == {"(maximum)", "solved", "bare"}
    assert table["solved"]["total"] == table["(maximum)"]["total"] == f"{sum(c.points for c in checks):g}"
    for check in checks:
        assert table["solved"][check.grade_id] == f"{check.points:g}", check.grade_id


def test_the_bare_release_earns_nothing_for_its_unsolved_checks(graded):
    out, checks = graded
    table = read_table(out)
    with out.with_name("grades.details.csv").open(newline="") as f:
        outcomes = {row["check"]: row["outcome"] for row in csv.DictReader(f) if row["student"] == "bare"}
    assert table["bare"]["total"] == "0"
    for check in checks:
        assert table["bare"][check.grade_id] == "0" and outcomes[check.grade_id].startswith("error: AssertionError"), (check.grade_id, outcomes[check.grade_id])
        assert "TODO" in outcomes[check.grade_id] or "not defined yet" in outcomes[check.grade_id], outcomes[check.grade_id]


def test_edited_checks_are_replaced_and_deleted_ones_score_zero(tmp_path):
    checks = grade.course_checks()
    submission = tmp_path / "student"
    submission.mkdir()
    first, second = checks[:2]  # both in notebook 1
    notebook = nbformat.read(REPO_DIR / first.notebook, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == first.grade_id:
            cell.source = "pass  # edited by the student"
    notebook.cells = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") != second.grade_id]
    nbformat.write(notebook, submission / first.notebook)
    (submission / "course").mkdir()
    (submission / "course" / "checks.py").write_text("def check_course_transforms(*args):\n    pass\n")
    work = tmp_path / "work"
    missing = grade.prepare_copy(submission, work, checks)
    assert (work / "course" / "checks.py").read_text() == (REPO_DIR / "course" / "checks.py").read_text()
    sources = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nbformat.read(work / first.notebook, as_version=4).cells}
    assert sources[first.grade_id] == first.source
    assert missing[second.grade_id] == "missing: the check cell was deleted"
    other_notebook = next(c for c in checks if c.notebook != first.notebook)
    assert missing[other_notebook.grade_id].startswith("missing: no ")


def test_an_endless_submission_is_stopped_and_scores_what_it_has(tmp_path):
    checks = [c for c in grade.course_checks() if c.notebook == grade.NOTEBOOKS[0]]
    submission = tmp_path / "endless"
    submission.mkdir()
    notebook = nbformat.read(REPO_DIR / grade.NOTEBOOKS[0], as_version=4)
    notebook.cells.insert(3, nbformat.v4.new_code_cell("import time\ntime.sleep(600)"))
    nbformat.write(notebook, submission / grade.NOTEBOOKS[0])
    outcomes = grade.grade_one(submission, checks, timeout=10, cell_timeout=600, env=grade.grading_env(full=False, data=None))
    assert set(outcomes.values()) == {"not run: the submission ran past its time limit of 10 s"}


def test_the_command_says_in_one_line_what_is_wrong(tmp_path, capsys, monkeypatch):
    assert grade.main([str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert grade.main([str(tmp_path)]) == 1
    assert "has no submission" in capsys.readouterr().err
    (tmp_path / "student").mkdir()
    shutil.copy2(REPO_DIR / grade.NOTEBOOKS[0], tmp_path / "student" / grade.NOTEBOOKS[0])
    monkeypatch.delenv("FKP_DATA", raising=False)
    assert grade.main([str(tmp_path), "--out", str(tmp_path / "grades.csv")]) == 1
    assert capsys.readouterr().err == "error: the dataset is needed: set FKP_DATA or pass --data with the dataset folder (the copies leave data/ out)\n"
    assert not (tmp_path / "grades.csv").exists()
