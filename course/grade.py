"""Grade a folder of submissions with the instructors' own checks: one command, a CSV of points.

    python -m course.grade SUBMISSIONS                      # writes grades.csv and grades.details.csv
    python -m course.grade SUBMISSIONS --out marks.csv --timeout 1800 --jobs 2 --full

``SUBMISSIONS`` holds one folder per student, each the student's copy of the course (the four notebooks and the
modules, as the release gave them). For each student, in turn or ``--jobs`` at a time:

1. the folder is copied (without data, caches and outputs) into a fresh temporary folder;
2. the copy's ``course/checks.py`` is replaced by this course's, and every check cell of its notebooks (nbgrader
   ``grade: true`` without ``solution``) by this course's cell of the same ``grade_id``: a student who edited or
   deleted a check cell or ``course/checks.py`` gets the instructors' version back (a deleted cell scores 0);
3. the four notebooks run from the top, in order, in their own process with a time limit (``--timeout`` for the
   whole submission, ``--cell-timeout`` per cell), each in a new kernel started in the copy, errors allowed, in
   quick mode unless ``--full``, on the dataset named by ``FKP_DATA`` or ``--data`` (the copies leave ``data/`` out);
4. a check cell that runs without an error earns the points of its nbgrader metadata; one that fails, did not run
   (time limit) or is missing earns 0.

The table has one row per student and one column per check (its ``grade_id``), then the total;
``*.details.csv`` has one row per student and check with the outcome (the error's first line). Written answers
(graded markdown cells) are not scored here: grade them by hand against the model answers.

What this does not prevent: students' code runs in the same kernel as the checks, so a submission can still
cheat on purpose (replace a check function from a module it imports, patch ``numpy``, read the instructors'
files it can reach), and it runs with the grader's rights (files, network). Copies, separate processes and time
limits stop one broken or endless submission from stopping the others, not a hostile one: run untrusted
submissions in a container or a throw-away machine, and look at the code of full marks that seem too good.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
NOTEBOOKS = (
    "1_Load_and_Visualize.ipynb",
    "2_Define_Train_Network.ipynb",
    "3_Facial_Keypoint_Detection_Complete_Pipeline.ipynb",
    "4_Fun_with_Keypoints.ipynb",
)
# Never copied from a submission: data, caches, outputs and earlier grading runs (big, or not the student's work).
NOT_COPIED = ("data", ".cache", "outputs", "runs", "release", ".git", "__pycache__", ".ipynb_checkpoints", ".grade")
RESULTS = ".grade/results.json"  # written by the child process, inside the copy


class GradeError(Exception):
    """A problem with the command's input, told in one line."""


@dataclass(frozen=True)
class Check:
    """One check cell of the course: where it is and what it is worth."""

    notebook: str
    grade_id: str
    points: float
    source: str


def course_checks(course: Path = REPO_DIR, notebooks: tuple[str, ...] = NOTEBOOKS) -> list[Check]:
    """The check cells of the course's notebooks, in order, with their points (nbgrader metadata)."""
    import nbformat

    found = []
    for name in notebooks:
        for cell in nbformat.read(course / name, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                found.append(Check(name, meta["grade_id"], float(meta.get("points", 0)), cell.source))
    return found


# ---------------------------------------------------------------------------------------------------------
# Preparing a submission
# ---------------------------------------------------------------------------------------------------------
def prepare_copy(submission: Path, work: Path, checks: list[Check], course: Path = REPO_DIR) -> dict[str, str]:
    """Copy ``submission`` into ``work`` with the course's ``course/checks.py`` and check cells.

    Returns the outcome so far of each check whose cell is missing from the submission ("missing": the notebook
    or the cell was deleted); the others are decided by running the notebooks.
    """
    import nbformat

    shutil.copytree(submission, work, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=False)
    (work / "course").mkdir(exist_ok=True)
    shutil.copy2(course / "course" / "checks.py", work / "course" / "checks.py")
    missing: dict[str, str] = {}
    by_id = {check.grade_id: check for check in checks}
    for name in sorted({check.notebook for check in checks}):
        path = work / name
        if not path.is_file():
            missing.update({c.grade_id: f"missing: no {name}" for c in checks if c.notebook == name})
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # nbformat raises several types for unreadable files
            missing.update({c.grade_id: f"missing: {name} is not a readable notebook ({type(error).__name__})" for c in checks if c.notebook == name})
            path.unlink()
            continue
        present = set()
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in by_id and by_id[grade_id].notebook == name:
                cell.cell_type, cell.source = "code", by_id[grade_id].source
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
                present.add(grade_id)
        missing.update({c.grade_id: "missing: the check cell was deleted" for c in checks if c.notebook == name and c.grade_id not in present})
        nbformat.write(notebook, path)
    return missing


# ---------------------------------------------------------------------------------------------------------
# Running one submission (in its own process)
# ---------------------------------------------------------------------------------------------------------
def first_line(text: str, limit: int = 300) -> str:
    line = next((l.strip() for l in str(text).splitlines() if l.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cell_outcome(cell) -> str:
    """"pass", or "error: <name>: <first line of the message>" from an executed cell's outputs."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"error: {output.get('ename', 'Error')}: {first_line(output.get('evalue', ''))}"
    return "pass" if cell.get("execution_count") is not None else "not run"


def run_notebooks(work: Path, grade_ids: set[str], cell_timeout: int) -> None:
    """Run the course notebooks found in ``work`` in order, each in a new kernel started there, and record the
    outcome of every check cell in ``work/RESULTS`` after each notebook (so a time limit keeps what was done)."""
    import nbformat
    from nbclient import NotebookClient

    results: dict[str, str] = {}
    out = work / RESULTS
    out.parent.mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        path = work / name
        if not path.is_file():
            continue
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=cell_timeout, allow_errors=True, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}})
        try:
            client.execute()
        except Exception as error:  # the kernel died, or a cell ran past its time limit: what ran still counts
            print(f"{name}: {type(error).__name__}: {first_line(str(error))}", file=sys.stderr)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in grade_ids:
                results[grade_id] = cell_outcome(cell)
        nbformat.write(notebook, work / ".grade" / name)
        out.write_text(json.dumps(results, indent=1))


def grade_one(submission: Path, checks: list[Check], timeout: float, cell_timeout: int, env: dict[str, str]) -> dict[str, str]:
    """The outcome of every check for one submission: prepare a copy, run it in a child process with a time limit."""
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        work = Path(scratch) / submission.name
        outcomes = prepare_copy(submission, work, checks)
        command = [sys.executable, str(Path(__file__).resolve()), "--run-one", str(work), "--cell-timeout", str(cell_timeout)]
        child = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # its own process group: a time limit stops its kernels too
        try:
            _, stderr = child.communicate(timeout=timeout)
            problem = "" if child.returncode == 0 else f"error: the run stopped ({first_line(stderr.strip().splitlines()[-1] if stderr.strip() else child.returncode)})"
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            problem = f"not run: the submission ran past its time limit of {timeout:g} s"
        results_file = work / RESULTS
        ran = json.loads(results_file.read_text()) if results_file.is_file() else {}
        for check in checks:
            if check.grade_id not in outcomes:
                outcomes[check.grade_id] = ran.get(check.grade_id) or problem or "not run"
        return outcomes


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------
def points(outcome: str, check: Check) -> float:
    return check.points if outcome == "pass" else 0.0


def write_tables(grades: dict[str, dict[str, str]], checks: list[Check], out: Path) -> Path:
    """Write the points table to ``out`` and the outcomes beside it (``*.details.csv``), each atomically."""
    details = out.with_name(f"{out.stem}.details.csv")
    rows = [["student", *[c.grade_id for c in checks], "total"]]
    rows.append(["(maximum)", *[f"{c.points:g}" for c in checks], f"{sum(c.points for c in checks):g}"])
    detail_rows = [["student", "notebook", "check", "points", "max_points", "outcome"]]
    for student, outcomes in grades.items():
        earned = [points(outcomes[c.grade_id], c) for c in checks]
        rows.append([student, *[f"{p:g}" for p in earned], f"{sum(earned):g}"])
        detail_rows += [[student, c.notebook, c.grade_id, f"{p:g}", f"{c.points:g}", outcomes[c.grade_id]] for c, p in zip(checks, earned)]
    for path, table in ((out, rows), (details, detail_rows)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", newline="", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
            csv.writer(f).writerows(table)
        os.replace(f.name, path)
    return details


def submissions_in(folder: Path) -> list[Path]:
    """The students' folders: every folder in ``folder`` that holds at least one course notebook."""
    if not folder.is_dir():
        raise GradeError(f"{folder} is not a folder: give the folder that holds one folder per student")
    found = sorted(p for p in folder.iterdir() if p.is_dir() and any((p / name).is_file() for name in NOTEBOOKS))
    if not found:
        raise GradeError(f"{folder} has no submission: put each student's course folder (with the notebooks) in it")
    return found


def grading_env(full: bool, data: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CI", "FKP_QUICK")}
    env.update({"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    if not full:
        env["FKP_QUICK"] = "1"
    if data:
        env["FKP_DATA"] = str(Path(data).resolve())
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("submissions", nargs="?", help="folder with one folder per student")
    parser.add_argument("--out", default="grades.csv", help="the points table (default: grades.csv); outcomes go to *.details.csv")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one whole submission (default: 1800)")
    parser.add_argument("--cell-timeout", type=int, default=900, help="seconds for one cell (default: 900)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default: 1)")
    parser.add_argument("--full", action="store_true", help="run the notebooks in full, not in quick mode (much longer training)")
    parser.add_argument("--data", help="the dataset folder (default: $FKP_DATA)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_one:
        work = Path(args.run_one)
        run_notebooks(work, {c.grade_id for c in course_checks()}, args.cell_timeout)
        return 0
    try:
        if not args.submissions:
            raise GradeError("give the folder of submissions: python -m course.grade SUBMISSIONS")
        if args.jobs < 1 or args.timeout <= 0:
            raise GradeError("--jobs and --timeout must be positive")
        students = submissions_in(Path(args.submissions))
        env = grading_env(args.full, args.data)
        data = env.get("FKP_DATA")
        if not data or not Path(data).is_dir():
            raise GradeError("the dataset is needed: set FKP_DATA or pass --data with the dataset folder (the copies leave data/ out)")
    except GradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    checks = course_checks()
    tic = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {s.name: pool.submit(grade_one, s, checks, args.timeout, args.cell_timeout, env) for s in students}
        grades = {}
        for name, future in futures.items():
            grades[name] = future.result()
            earned = sum(points(grades[name][c.grade_id], c) for c in checks)
            print(f"{name}: {earned:g} / {sum(c.points for c in checks):g} points")
    details = write_tables(grades, checks, Path(args.out))
    print(f"wrote {args.out} and {details} ({len(students)} submissions, {len(checks)} checks, {time.perf_counter() - tic:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
