"""How long grading takes: a class of submissions made from the students' release, graded with the defaults.

    FKP_DATA=/path/to/data python benchmarks/grading_time.py                 # 5 submissions
    FKP_DATA=/path/to/data python benchmarks/grading_time.py --students 30 --keep marks/

The submissions cycle through five kinds a class hands in: every solution in the hand-in file
(``course.handin``, with a trained model), every solution in a Colab-style course folder (``Copy of ...``
notebooks beside the released ones), every solution with a cell that never ends (``while True: pass``, in
notebook 2), every solution with a cell that kills its kernel (``os._exit(1)``, in notebook 3), and the bare
release handed in. ``python -m course.grade`` then grades them with its default limits (``--jobs``,
``--cell-timeout``, ``--timeout``); the script prints the wall time, the processor time the grading used (all its
processes and kernels together: divided by the number of CPUs, the least wall time it could take on an idle
machine of this size), each row of the table and the machine's load average before and after (the wall time
depends on what else runs).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

from course import grade, handin  # noqa: E402
from course.release import make_release  # noqa: E402

KINDS = ("handed-in", "colab", "hanging", "crashing", "bare")
TRAINED_MODEL = REPO_DIR / "saved_models" / "keypoints_course.pt"  # stands in for a student's trained network


def solved(release: Path, target: Path, rename=lambda name: name) -> Path:
    """A copy of the release with the instructors' solutions pasted in (modules and solution cells)."""
    import nbformat

    shutil.copytree(release, target)
    for module in grade.graded_modules(REPO_DIR):
        shutil.copy2(REPO_DIR / module, target / module)
    for known in handin.course_notebooks(REPO_DIR):
        solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(REPO_DIR / known.name, as_version=4).cells
                     if c.metadata.get("nbgrader", {}).get("solution")}
        notebook = nbformat.read(target / known.name, as_version=4)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in solutions:
                cell.source = solutions[grade_id]
        nbformat.write(notebook, target / rename(known.name))
    return target


def insert_cell(folder: Path, number: int, source: str, after: int = 3) -> None:
    import nbformat

    name = next(n.name for n in handin.course_notebooks(folder) if n.number == number)
    notebook = nbformat.read(folder / name, as_version=4)
    notebook.cells.insert(after, nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, folder / name)


def make_submission(kind: str, release: Path, scratch: Path, submissions: Path, name: str) -> None:
    if kind == "handed-in":
        folder = solved(release, scratch / name)
        shutil.copy2(TRAINED_MODEL, folder / handin.STUDENT_MODEL)
        made = subprocess.run([sys.executable, "-m", "course.handin", "--out", str(submissions / f"{name}.zip")], cwd=folder,
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise SystemExit(f"the hand-in failed: {made.stderr.strip()}")
    elif kind == "colab":
        solved(release, submissions / name, rename=lambda notebook: f"Copy of {notebook}")  # beside the released notebooks
    elif kind == "hanging":
        insert_cell(solved(release, submissions / name), 2, "while True:\n    pass")
    elif kind == "crashing":
        insert_cell(solved(release, submissions / name), 3, "import os\nos._exit(1)")
    else:
        shutil.copytree(release, submissions / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=5, help="how many submissions (default: 5, one of each kind)")
    parser.add_argument("--keep", help="write the tables and feedback here (default: a temporary folder, removed)")
    parser.add_argument("grade_options", nargs=argparse.REMAINDER, help="options passed on to course.grade (after --)")
    args = parser.parse_args(argv)
    if not os.environ.get("FKP_DATA"):
        print("error: set FKP_DATA to the dataset folder", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="grading-time-") as scratch:
        scratch = Path(scratch)
        release = scratch / "release"
        make_release(release)
        submissions = scratch / "submissions"
        submissions.mkdir()
        for index in range(args.students):
            kind = KINDS[index % len(KINDS)]
            make_submission(kind, release, scratch, submissions, f"{index + 1:02d}-{kind}")
        out = Path(args.keep) / "grades.csv" if args.keep else scratch / "out" / "grades.csv"
        options = [o for o in args.grade_options if o != "--"]
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        tic = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "course.grade", str(submissions), "--out", str(out), *options], cwd=REPO_DIR,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - tic
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            print(done.stderr.strip(), file=sys.stderr)
            return 1
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
    print(f"graded {args.students} submissions in {seconds:.0f} s ({seconds / 60:.1f} min) with python -m course.grade "
          f"{' '.join(options) or '(defaults)'}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"processor time: {cpu:.0f} s in all, {cpu / (os.cpu_count() or 1):.0f} s per CPU (the wall time on an idle machine "
          f"of {os.cpu_count()} CPUs cannot be less)")
    for row in rows:
        print(f"  {row['student']:<14} {row['auto']:>3} / {rows[0]['auto']}  {row['test_nme_io'] or '-':>7}  {row['status']}"
              + (f"  [{row['notes'][:160]}]" if row["notes"] else ""))
    print(json.dumps({"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "students": args.students}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
