"""A tiny course in the layout of the real one, for the tests of the hand-in and of grading: two notebooks with
course metadata and nbgrader cells (a code exercise, three check cells of which two check parts of one module,
a written answer), and one module with two TODOs. Its notebooks run in a few seconds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

import course.release

NAMES = ("1_First.ipynb", "2_Second.ipynb")
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
LESSON = '''def double(x):
    """Twice x."""
    # TODO: return twice x
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION


def half(x):
    """Half of x."""
    # TODO: return half of x
    ### BEGIN SOLUTION
    return x / 2
    ### END SOLUTION
'''
QUESTION = "**Question:** why is double(2) four?"


def nbgrader(grade_id: str, solution: bool = False, grade: bool = False, points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def make_course(root: Path) -> Path:
    """The instructors' version of the tiny course in ``root`` (created): solutions between markers."""
    root.mkdir(parents=True)
    (root / "lesson.py").write_text(LESSON)
    first = nbformat.v4.new_notebook(metadata={"course": {"notebook": 1}, "kernelspec": KERNEL})
    first.cells = [
        nbformat.v4.new_markdown_cell("# One"),
        nbformat.v4.new_code_cell("import lesson"),
        nbformat.v4.new_code_cell("# TODO: value = 3\n### BEGIN SOLUTION\nvalue = 3\n### END SOLUTION", metadata=nbgrader("value", solution=True)),
        nbformat.v4.new_code_cell('assert value == 3, "value should be 3"', metadata=nbgrader("check-value", grade=True, points=1)),
        nbformat.v4.new_code_cell('assert lesson.double(2) == 4, "double(2) should be 4"', metadata=nbgrader("check-double", grade=True, points=2)),
        nbformat.v4.new_code_cell('assert lesson.half(4) == 2, "half(4) should be 2"', metadata=nbgrader("check-half", grade=True, points=2)),
        nbformat.v4.new_markdown_cell(QUESTION),
        nbformat.v4.new_markdown_cell("**Answer:**\n\n### BEGIN SOLUTION\nTwice two.\n### END SOLUTION",
                                      metadata=nbgrader("answer-why", solution=True, grade=True, points=1)),
    ]
    second = nbformat.v4.new_notebook(metadata={"course": {"notebook": 2}, "kernelspec": KERNEL})
    second.cells = [
        nbformat.v4.new_code_cell("import lesson"),
        nbformat.v4.new_code_cell("# TODO: name = 'x'\n### BEGIN SOLUTION\nname = 'x'\n### END SOLUTION", metadata=nbgrader("name", solution=True)),
        nbformat.v4.new_code_cell('assert name == "x", "name should be x"', metadata=nbgrader("check-name", grade=True, points=1)),
        nbformat.v4.new_code_cell("assert lesson.double(1) == 2", metadata=nbgrader("check-after", grade=True, points=1)),
    ]
    nbformat.write(first, root / NAMES[0])
    nbformat.write(second, root / NAMES[1])
    return root


def make_release(course_dir: Path, out: Path) -> Path:
    course.release.make_release(out, course_dir)
    return out


def solve(source: Path, target: Path, notebook: str) -> nbformat.NotebookNode:
    """The release's notebook ``notebook`` in ``target`` with the solutions of ``source`` pasted in."""
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(source / notebook, as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    released = nbformat.read(target / notebook, as_version=4)
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = solutions[grade_id]
    return released


def solved_copy(course_dir: Path, release: Path, target: Path) -> Path:
    """A student's course folder with everything solved: the release, with the module and the cells filled in."""
    shutil.copytree(release, target)
    shutil.copy2(course_dir / "lesson.py", target / "lesson.py")
    for name in NAMES:
        nbformat.write(solve(course_dir, target, name), target / name)
    return target


def insert_cell(folder: Path, notebook: str, index: int, source: str) -> None:
    """Put a code cell of the student's at ``index`` in a notebook of ``folder``."""
    read = nbformat.read(folder / notebook, as_version=4)
    read.cells.insert(index, nbformat.v4.new_code_cell(source))
    nbformat.write(read, folder / notebook)


def strip_metadata(path: Path) -> None:
    """What an editor that keeps no metadata does to a notebook: no notebook or cell metadata left."""
    data = json.loads(path.read_text())
    data["metadata"] = {}
    for cell in data["cells"]:
        cell["metadata"] = {}
    path.write_text(json.dumps(data))
