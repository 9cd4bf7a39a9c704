"""Grade what students hand in with the course's own checks: one command, a table of points and feedback per student.

    python -m course.grade SUBMISSIONS                  # writes grades.csv, grades.details.csv and feedback/
    python -m course.grade SUBMISSIONS --out marks/grades.csv --jobs 2 --full
    python -m course.grade --totals grades.csv          # after filling in the written answers' points

``SUBMISSIONS`` holds one entry per student, named after the student: the zip file the hand-in cell makes
(``course/handin.py``), a folder (the student's course folder, with ``Copy of ...`` notebooks or not, or a folder
holding the zip file), or a lone notebook. Every entry gets a row, the ones that cannot be graded with the reason.
For each student, ``--jobs`` at a time:

1. The files graded are found wherever they are in the entry (zip files are unpacked, data and caches left out):
   each course notebook by its course metadata (``metadata["course"]["notebook"]``), else by its graded cells, else
   by its file name, so ``Copy of 2_Define_Train_Network.ipynb`` counts; the modules with the course's TODOs
   (the ``.py`` files with solution markers in this repository); and ``saved_models/student_net.pt``. Where there
   are several copies of a notebook, the one with the most exercises done is taken (then the newest), and the
   feedback says so.
2. They are laid over a fresh students' release of this course (``course.release``) in a temporary folder: what the
   student did not hand in is the release's (a missing notebook runs as released, so the checks of the student's
   modules in it still count), and every check cell (nbgrader ``grade: true`` without ``solution``) is this
   course's cell of the same ``grade_id``: an edited check is restored, a deleted one scores 0.
3. The notebooks run from the top, in course order, each in a new kernel, errors allowed, in quick mode unless
   ``--full``, on the dataset of ``FKP_DATA`` or ``--data``, in a process of their own with a time limit for the
   submission (``--timeout``). A cell that runs past ``--cell-timeout`` is interrupted and the notebook goes on; a
   kernel that does not answer the interrupt, or dies, stops its notebook and the next one starts.
4. A check cell that runs without an error earns the points of its nbgrader metadata, one that fails or did not run
   earns 0: each check cell counts on its own, so a check split into one cell per part gives partial credit.
5. A handed-in ``saved_models/student_net.pt`` is measured on the test set (NME_io, ``pipeline.evaluation``) with
   the student's own ``models.py``, in a process of its own with a time limit (``--model-timeout``), without
   retraining.

Outputs: ``grades.csv`` has one row per student: a status, one column per check (its ``grade_id``), ``auto`` (their
sum), one empty column per written answer for you to fill in (the ``(maximum)`` row gives each column's points),
``total`` and ``test_nme_io``. Run ``--totals`` after filling in the answers; a new grading run keeps the points
already filled in. ``grades.details.csv`` gives every check's outcome (the first line of its error, or why it did
not run). ``feedback/STUDENT/`` holds the executed notebooks (``.ipynb`` and ``.html``) and ``report.md``: points,
outcomes, how each notebook ran, the model's error and the written answers.

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
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from course import handin

REPO_DIR = Path(__file__).resolve().parents[1]
GRADE_DIR = ".grade"  # inside a submission's copy: the plan, the progress, the results and the executed notebooks
# Default limits, sized for a 2-core machine: the four notebooks take about 2 to 5 minutes in quick mode there.
CELL_TIMEOUT = 120
SUBMISSION_TIMEOUT = 900
MODEL_TIMEOUT = 300
# What is unpacked from a zip file: notebooks, modules, the model and small metadata files (never data or caches).
UNPACKED_SUFFIXES = (".ipynb", ".py", ".pt", ".json", ".zip")
MAX_UNPACKED_BYTES = 2_000_000_000
TIMEOUT_ENAME = "CellTimeoutError"  # the error a cell past its time limit gets in the executed notebook
STUCK_GRACE = 20  # seconds for the cell after one whose interrupt left no trace (see run_notebooks)
# A kernel that stops before the notebook's first cell has started failed to start (seen in a grading run of a
# solved notebook: "Kernel died before replying to kernel_info"), which says nothing of the student's work: it is
# started again, up to this many times in all.
KERNEL_START_TRIES = 2
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Folders of a submission never searched: data, caches, outputs, environments (the student's own hand-in files are).
SKIPPED_DIRS = handin.SKIPPED_DIRS - {"handin"}


class GradeError(Exception):
    """A problem with the command's input, told in one line."""


class NotGradable(Exception):
    """Why a submission cannot be graded, in one line (it still gets a row)."""


# ---------------------------------------------------------------------------------------------------------
# The course: its notebooks, checks, written answers and modules
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One check cell of the course: where it is and what it is worth."""

    notebook: str
    grade_id: str
    points: float
    source: str


@dataclass(frozen=True)
class Answer:
    """One written answer of the course, graded by hand."""

    notebook: str
    grade_id: str
    points: float
    question: str  # the cell before it: finds the answer in a notebook whose cell metadata an editor dropped


@dataclass
class Course:
    folder: Path
    notebooks: list[handin.CourseNotebook]
    checks: list[Check]
    answers: list[Answer]
    modules: list[str]  # relative paths of the .py files with solutions: what students write outside notebooks

    def number(self, name: str) -> int:
        return next(n.number for n in self.notebooks if n.name == name)

    @property
    def max_auto(self) -> float:
        return sum(check.points for check in self.checks)

    @property
    def max_total(self) -> float:
        return self.max_auto + sum(answer.points for answer in self.answers)


def graded_modules(folder: Path) -> list[str]:
    """The course's .py files with solution markers (the release stubs them: students write them)."""
    from course.release import MARKER, release_files

    return [relative for relative in release_files(folder) if relative.endswith(".py")
            and any(MARKER.match(line) for line in (folder / relative).read_text(encoding="utf-8").splitlines())]


def load_course(folder: str | os.PathLike = REPO_DIR) -> Course:
    """The course in ``folder``: its notebooks (by course metadata), check cells, written answers and modules."""
    import nbformat

    folder = Path(folder).resolve()
    notebooks = handin.course_notebooks(folder)
    if not notebooks:
        raise GradeError(f"{folder} has no course notebook (a notebook with metadata {{\"course\": {{\"notebook\": N}}}})")
    checks, answers = [], []
    for known in notebooks:
        cells = nbformat.read(folder / known.name, as_version=4).cells
        for before, cell in zip([None, *cells], cells):
            meta = handin.nbgrader(cell)
            if handin.is_check(cell):
                checks.append(Check(known.name, meta["grade_id"], float(meta.get("points", 0)), cell.source))
            elif cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
                answers.append(Answer(known.name, meta["grade_id"], float(meta.get("points", 0)), before.source if before else ""))
    return Course(folder, notebooks, checks, answers, graded_modules(folder))


# ---------------------------------------------------------------------------------------------------------
# Finding what a student handed in
# ---------------------------------------------------------------------------------------------------------
def unpack_zip(archive: Path, into: Path) -> Path:
    """Extract the files that can matter for grading (notebooks, modules, the model) from ``archive`` into
    ``into``, keeping their dates; raises ``NotGradable`` when the file is not a readable zip archive."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = []
            for info in zipped.infolist():
                parts = PurePosixPath(info.filename).parts
                if (info.is_dir() or not info.filename.endswith(UNPACKED_SUFFIXES) or ".." in parts or info.filename.startswith("/")
                        or any(part in SKIPPED_DIRS or part.startswith(("__MACOSX", "._")) for part in parts)):
                    continue
                members.append(info)
            if sum(info.file_size for info in members) > MAX_UNPACKED_BYTES:
                raise NotGradable(f"{archive.name} unpacks to more than {MAX_UNPACKED_BYTES / 1e9:g} GB of notebooks and code")
            into.mkdir(parents=True, exist_ok=True)
            for info in members:
                target = Path(zipped.extract(info, into))
                stamp = datetime.datetime(*info.date_time).timestamp()
                os.utime(target, (stamp, stamp))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise NotGradable(f"{archive.name} is not a readable zip archive ({type(error).__name__}): ask for the file the hand-in cell makes") from None
    return into


def walk(root: Path, depth: int = 6) -> list[Path]:
    """The files under ``root``, down to ``depth`` folders, without data, caches, outputs and environments."""
    found = []
    for folder, dirs, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".") and level < depth)
        found += [Path(folder) / name for name in sorted(files) if not name.startswith(".")]
    return found


@dataclass
class Found:
    """What was found in one submission, and what was said about it."""

    notebooks: dict[int, handin.Copy] = field(default_factory=dict)
    modules: dict[str, Path] = field(default_factory=dict)
    model: Path | None = None
    notes: list[str] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)  # where each module and the model were, as the student named them
    choices: dict[int, str] = field(default_factory=dict)  # the other copies of a notebook found: "over Copy of ... (2)"


def find_submission(entry: Path, scratch: Path, course: Course) -> Found:
    """Find the notebooks, modules and model of one student's entry (a folder, a zip file or a notebook),
    unpacking zip files into ``scratch``; raises ``NotGradable`` when there is nothing to grade."""
    found = Found()
    if entry.is_dir():
        roots = [entry]
    elif entry.is_file() and entry.suffix.lower() == ".zip":
        roots = [unpack_zip(entry, scratch / "unpacked")]
    elif entry.is_file() and entry.suffix.lower() == ".ipynb":
        (scratch / "notebook").mkdir(parents=True)
        shutil.copy2(entry, scratch / "notebook" / entry.name)
        roots = [scratch / "notebook"]
    else:
        raise NotGradable(f"{entry.name} is not a folder, a zip file or a notebook")
    try:
        files = [(root, path) for root in roots for path in walk(root)]
        for number, (root, archive) in enumerate([(r, p) for r, p in files if p.suffix.lower() == ".zip"]):
            try:
                inner = unpack_zip(archive, scratch / f"inner{number}")
            except NotGradable as error:
                found.notes.append(f"{archive.relative_to(root)}: left out, {str(error).split(' is ', 1)[-1].split(':')[0]}")
                continue
            found.notes.append(f"unpacked {archive.relative_to(root)}")
            files += [(inner, path) for path in walk(inner)]
    except OSError as error:
        raise NotGradable(f"{entry.name} cannot be read ({error.strerror or error})") from None

    copies: list[handin.Copy] = []
    for root, path in files:
        if path.suffix != ".ipynb":
            continue
        name = str(path.relative_to(root)) if root == entry else f"{path.relative_to(root)} (in the zip file)"
        got, unread = handin.copies_in_files([path], course.notebooks)
        for copy in got:
            copy.where = name
        copies += got
        found.notes += [f"{name}: left out, {note.split(': skipped, ', 1)[-1]}" for note in unread]
        if not got and not unread:
            found.notes.append(f"{name}: left out, not one of the course notebooks")
    for number, (copy, others) in handin.choose(copies, course.notebooks).items():
        found.notebooks[number] = copy
        if others:
            found.choices[number] = "over " + ", ".join(f"{o.where} ({o.done})" for o in others)

    def candidates(relative: str) -> list[tuple[Path, Path]]:
        parts = PurePosixPath(relative).parts
        return [(root, path) for root, path in files if path.parts[-len(parts):] == parts]

    def shown(root: Path, path: Path) -> str:
        return str(path.relative_to(root)) if root == entry else f"{path.relative_to(root)} (in the zip file)"

    folders: dict[Path, tuple[int, bool, int]] = {}
    for relative in course.modules:
        for root, path in candidates(relative):
            home = path.parents[len(PurePosixPath(relative).parts) - 1]
            count = folders.get(home, (0,))[0]
            folders[home] = (count + 1, root != entry, -len(home.relative_to(root).parts))
    # The student's course folder: the one holding most of the modules, then one from a zip file (made to be
    # handed in), then the shallowest.
    home = max(folders, key=lambda f: folders[f], default=None)

    def pick(options: list[tuple[Path, Path]], relative: str) -> tuple[Path, Path]:
        at_home = [(r, p) for r, p in options if home is not None and p == home / relative]
        return at_home[0] if at_home else min(options, key=lambda rp: len(rp[1].relative_to(rp[0]).parts))

    for relative in course.modules:
        options = candidates(relative)
        if not options:
            continue
        root, path = pick(options, relative)
        found.modules[relative], found.shown[relative] = path, shown(root, path)
        if len(options) > 1:
            found.notes.append(f"{relative}: {len(options)} copies, took {found.shown[relative]}")
    models = candidates(handin.STUDENT_MODEL) or [(r, p) for r, p in files if p.name == Path(handin.STUDENT_MODEL).name]
    if models:
        root, found.model = pick(models, handin.STUDENT_MODEL)
        found.shown[handin.STUDENT_MODEL] = shown(root, found.model)
    if not found.notebooks and not found.modules:
        raise NotGradable(f"no course notebook or module in {entry.name}: ask for the file the hand-in cell makes")
    return found


# ---------------------------------------------------------------------------------------------------------
# Preparing a submission's copy
# ---------------------------------------------------------------------------------------------------------
def answers_of(notebook: Any, answers: Sequence[Answer]) -> dict[str, str]:
    """The text of each written answer in a student's notebook ("" when missing or still the stub)."""
    cells = notebook.cells
    by_id = {handin.nbgrader(cell).get("grade_id"): cell for cell in cells}
    texts = {}
    for answer in answers:
        cell = by_id.get(answer.grade_id)
        if cell is None and answer.question.strip():  # cell metadata dropped: the markdown cell after the question
            after = [b for a, b in zip(cells, cells[1:]) if a.source.strip() == answer.question.strip() and b.cell_type == "markdown"]
            cell = after[0] if after else None
        text = cell.source.strip() if cell is not None else ""
        texts[answer.grade_id] = "" if handin.is_stub(text) else text
    return texts


def restore_checks(notebook: Any, name: str, course: Course) -> set[str]:
    """Put the course's check cells of notebook ``name`` in place of the student's (found by grade_id, or by their
    source when an editor dropped the cell metadata); returns the grade_ids found."""
    import nbformat

    checks = {check.grade_id: check for check in course.checks if check.notebook == name}
    by_source = {check.source.strip(): check for check in checks.values()}
    present = set()
    for cell in notebook.cells:
        check = checks.get(handin.nbgrader(cell).get("grade_id")) or (by_source.get(cell.source.strip()) if cell.cell_type == "code" else None)
        if check is None or check.grade_id in present:
            continue
        fresh = nbformat.v4.new_code_cell(check.source)
        cell.clear()
        cell.update(fresh)
        cell.metadata["nbgrader"] = {"grade": True, "grade_id": check.grade_id, "locked": True, "points": check.points, "solution": False,
                                     "schema_version": 3, "task": False}
        present.add(check.grade_id)
    return present


def link_cache(cache: Path | None, target: Path) -> None:
    """Hard-link the files of ``cache`` (caches the notebooks would otherwise rebuild, such as the cut face crops)
    into ``target``; copies where links cannot be made. The notebooks replace cache files, never write into them."""
    if cache is None or not cache.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for source in cache.iterdir():
        if not source.is_file() or ".tmp" in source.name or source.name.startswith("."):
            continue
        try:
            os.link(source, target / source.name)
        except OSError:
            shutil.copy2(source, target / source.name)


def prepare_copy(found: Found, base: Path, work: Path, course: Course, cache: Path | None = None) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Lay the student's files over a copy of the release (``base``) in ``work``, with the files of ``cache``
    in its ``.cache/``.

    Returns the outcome of each check whose cell the student deleted, the written answers, and notes (what was
    not handed in)."""
    shutil.copytree(base, work, symlinks=False)
    link_cache(cache, work / ".cache")
    notes, outcomes, texts = [], {}, {}
    for relative in course.modules:
        if relative in found.modules:
            shutil.copy2(found.modules[relative], work / relative)
        else:
            notes.append(f"{relative} was not handed in: the release's version (its TODOs not done) was used")
    for known in course.notebooks:
        copy = found.notebooks.get(known.number)
        if copy is None:
            notes.append(f"notebook {known.number} ({known.name}) was not handed in: the release's notebook ran in its place")
            texts.update({a.grade_id: "" for a in course.answers if a.notebook == known.name})
            continue
        notebook = handin.read_notebook(json.dumps(copy.notebook))
        texts.update(answers_of(notebook, [a for a in course.answers if a.notebook == known.name]))
        present = restore_checks(notebook, known.name, course)
        outcomes.update({c.grade_id: "missing: the check cell was deleted" for c in course.checks if c.notebook == known.name and c.grade_id not in present})
        notebook.metadata[handin.COURSE_KEY] = {"notebook": known.number}
        (work / known.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf-8")
    if found.model is not None:
        (work / handin.STUDENT_MODEL).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found.model, work / handin.STUDENT_MODEL)
        (work / GRADE_DIR).mkdir(exist_ok=True)
        shutil.copy2(found.model, work / GRADE_DIR / "handed_in_model.pt")  # notebook 2 saves over the first one
    return outcomes, texts, notes


# ---------------------------------------------------------------------------------------------------------
# Running the notebooks (in a process of their own)
# ---------------------------------------------------------------------------------------------------------
def first_line(text: str, limit: int = 300) -> str:
    line = next((l.strip() for l in ANSI.sub("", str(text)).splitlines() if l.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failing_line(traceback: Sequence[str]) -> str:
    """The source line an IPython traceback points at last (``----> 3 assert ...``), or ""."""
    lines = [ANSI.sub("", line) for entry in traceback for line in str(entry).splitlines()]
    pointed = [m.group(1).strip() for m in (re.match(r"^\s*-+>\s*\d+\s(.*)$", line) for line in lines) if m]
    return pointed[-1] if pointed else ""


def cell_outcome(cell: Any) -> str:
    """"pass", "fail: <error>: <first line of its message, else the line that raised it>" or "not run"."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            message = first_line(output.get("evalue", "")) or failing_line(output.get("traceback", []))
            return f"fail: {output.get('ename', 'Error')}" + (f": {message}" if message else "")
    return "pass" if cell.get("execution_count") is not None else "not run"


def source_summary(cell: Any) -> str:
    """A cell's first line that does something (not a comment or an import), to name it in a message."""
    lines = [line.strip() for line in str(cell.get("source", "")).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(("#", "import ", "from "))] or lines
    line = first_line(telling[0], 60) if telling else ""
    return f"`{line}`" if line else "(empty)"


class KernelStuck(Exception):
    """A cell ran past its time limit and the kernel did not answer the interrupt."""


def run_notebooks(work: Path) -> None:
    """Run the notebooks the plan (``.grade/plan.json``) names, in order, each in a new kernel started in
    ``work``, and keep ``.grade/results.json`` (each check's outcome and how each notebook ran), the progress and
    the executed notebooks up to date as they run, so that a time limit loses nothing already done. A kernel that
    stops before the first cell has started is started again (``KERNEL_START_TRIES``)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    grade = work / GRADE_DIR
    plan = json.loads((grade / "plan.json").read_text())
    timeout = plan["cell_timeout"]
    checks = set(plan["checks"])
    results: dict[str, Any] = {"checks": {}, "notebooks": {}}

    def save(path: Path, data: Any) -> None:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
            f.write(json.dumps(data, ensure_ascii=False))
        os.replace(f.name, path)

    for name in plan["notebooks"]:
        notebook = nbformat.read(work / name, as_version=4)
        state: dict[str, Any] = {"suspect": "", "written": 0.0, "cells": 0}
        run = results["notebooks"][name] = {"status": "running", "reason": "", "seconds": 0.0, "timeouts": []}
        tic = time.perf_counter()

        def started(cell: Any, cell_index: int, **_: Any) -> None:
            state["cells"] += 1
            provisioner = getattr(client.km, "provisioner", None)
            save(grade / "progress.json", {"notebook": name, "cell": cell_index + 1, "source": source_summary(cell),
                                           "kernel_pgid": getattr(provisioner, "pgid", None)})
            if time.monotonic() - state["written"] > 5:  # the executed notebook so far, for a time limit that stops all
                save(grade / name, notebook)
                state["written"] = time.monotonic()

        def cell_timeout(cell: Any) -> int:
            # After an interrupt that left no trace, the next cell gets a short time: a kernel still busy with the
            # cell before (code that catches the interrupt and goes on) stops the notebook without a second wait.
            return min(timeout, STUCK_GRACE) if state["suspect"] else timeout

        def executed(cell: Any, cell_index: int, execute_reply: dict | None = None, **_: Any) -> None:
            timed_out = (execute_reply or {}).get("content", {}).get("ename") == TIMEOUT_ENAME
            if timed_out and state["suspect"]:
                raise KernelStuck(f"{state['suspect']} ran past the time limit of {timeout} s and the kernel did not stop when interrupted")
            here = f"cell {cell_index + 1} ({source_summary(cell)})"
            interrupted = any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt" for o in cell.outputs)
            state["suspect"] = here if timed_out and not interrupted else ""
            if timed_out:
                cell.outputs.append(nbformat.v4.new_output("error", ename=TIMEOUT_ENAME, traceback=[],
                                                           evalue=f"this cell ran past the time limit of {timeout} s and was interrupted"))
                run["timeouts"].append(here)
            grade_id = handin.nbgrader(cell).get("grade_id")
            if grade_id in checks:
                results["checks"][grade_id] = f"fail: time limit: the check ran past {timeout} s" if timed_out else cell_outcome(cell)
                save(grade / "results.json", results)

        for attempt in range(1, KERNEL_START_TRIES + 1):
            client = NotebookClient(notebook, timeout=timeout, timeout_func=cell_timeout, iopub_timeout=15, allow_errors=True,
                                    kernel_name="python3", startup_timeout=120, interrupt_on_timeout=True,
                                    error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "time limit", "traceback": []},
                                    resources={"metadata": {"path": str(work)}}, on_cell_execute=started, on_cell_executed=executed)
            try:
                client.execute()
                run["status"] = "complete"
            except KernelStuck as error:
                run["status"], run["reason"] = "stopped", str(error)
            except DeadKernelError:
                run["status"], run["reason"] = "stopped", "the kernel died before the first cell"
                if state["cells"]:
                    progress = json.loads((grade / "progress.json").read_text())
                    run["reason"] = (f"the kernel died in cell {progress['cell']} ({progress['source']}): a crash (os._exit, "
                                     "out of memory, a native library)")
            except Exception as error:  # nbclient raises several types when a kernel cannot start or stops answering
                run["status"], run["reason"] = "stopped", f"{type(error).__name__}: {first_line(str(error))}"
            if run["status"] == "complete" or state["cells"]:
                break
            if attempt < KERNEL_START_TRIES:
                run["reason"] = ""
            else:
                run["reason"] = f"the kernel did not start ({attempt} tries; {run['reason']}): grade this submission again"
        run["seconds"] = round(time.perf_counter() - tic, 1)
        if run["status"] == "stopped":
            for cell in notebook.cells:
                grade_id = handin.nbgrader(cell).get("grade_id")
                if grade_id in checks and grade_id not in results["checks"]:
                    results["checks"][grade_id] = f"not run: {run['reason']}"
        save(grade / name, notebook)
        save(grade / "results.json", results)


@dataclass
class Settings:
    timeout: float = SUBMISSION_TIMEOUT
    cell_timeout: int = CELL_TIMEOUT
    model_timeout: float = MODEL_TIMEOUT
    env: dict[str, str] = field(default_factory=dict)
    html: bool = True
    cache: Path | None = None


def kill_group(pgid: int | None) -> None:
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_submission(work: Path, course: Course, settings: Settings) -> tuple[dict, str, str]:
    """Run the notebooks of a prepared copy in a child process with the submission's time limit.

    Returns the results (``run_notebooks``), the reason the run stopped early ("" when it did not) and its log."""
    grade = work / GRADE_DIR
    grade.mkdir(exist_ok=True)
    plan = {"notebooks": [n.name for n in course.notebooks], "checks": [c.grade_id for c in course.checks], "cell_timeout": settings.cell_timeout}
    (grade / "plan.json").write_text(json.dumps(plan))
    command = [sys.executable, "-m", "course.grade", "--run-one", str(work)]
    log = grade / "run.log"
    with log.open("w") as output:
        child = subprocess.Popen(command, cwd=REPO_DIR, env=settings.env, stdout=output, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # its own process group, stopped with it on a time limit
        problem = ""
        try:
            code = child.wait(timeout=settings.timeout)
            if code != 0:
                problem = f"the grading process stopped ({first_line(log.read_text(errors='replace').strip().splitlines()[-1] if log.stat().st_size else code)})"
        except subprocess.TimeoutExpired:
            kill_group(child.pid)
            child.wait()
            where = ""
            progress = grade / "progress.json"
            if progress.is_file():  # kernels run in sessions of their own: stopped below
                at = json.loads(progress.read_text())
                where = f", in cell {at['cell']} ({at['source']}) of {at['notebook']}"
            problem = f"the submission ran past its time limit of {settings.timeout:g} s{where}"
    if problem and (grade / "progress.json").is_file():  # a kernel left behind by a process that did not end well
        kill_group(json.loads((grade / "progress.json").read_text()).get("kernel_pgid"))
    results_file = grade / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"checks": {}, "notebooks": {}}
    return results, problem, log.read_text(errors="replace")


# Measures a model in the submission's copy, with the submission's models.py (run there: "" is the copy).
EVALUATE = r"""
import json, sys
sys.path.insert(0, "")
import cv2, torch
torch.set_num_threads(1)
cv2.setNumThreads(1)
import models
from pipeline import evaluation
model, meta = models.load_model(sys.argv[1])
metrics, per_face, names = evaluation.evaluate_model(model, sys.argv[2], "test")
print(json.dumps({"nme_io": metrics["nme_io"], "fr10": metrics["fr10"], "faces": len(names),
                  "architecture": meta.get("architecture"), "input_size": meta.get("input_size")}))
"""


def measure_model(work: Path, settings: Settings) -> dict:
    """The handed-in model's test NME_io ({"nme_io": ..., ...}) or why it was not measured ({"problem": ...})."""
    model = work / GRADE_DIR / "handed_in_model.pt"
    if not model.is_file():
        return {"problem": f"no {handin.STUDENT_MODEL} handed in"}
    child = subprocess.Popen([sys.executable, "-c", EVALUATE, str(model), settings.env["FKP_DATA"]], cwd=work, env=settings.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=settings.model_timeout)
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        child.communicate()
        return {"problem": f"not measured: the evaluation ran past its time limit of {settings.model_timeout:g} s"}
    if child.returncode != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        return {"problem": f"not measured: {first_line(lines[-1]) if lines else f'exit code {child.returncode}'}"}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"problem": "not measured: the evaluation printed no result"}


# ---------------------------------------------------------------------------------------------------------
# One submission
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Graded:
    """Everything known about one student's submission after grading."""

    student: str
    entry: Path
    problem: str = ""  # why it could not be graded ("" when it was)
    outcomes: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    notebooks: dict[str, dict] = field(default_factory=dict)
    stopped: str = ""  # why the run stopped early
    model: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # what was graded, said in the report
    choices: list[str] = field(default_factory=list)  # which copy of a notebook was taken over which, said in the table
    seconds: float = 0.0

    def points(self, check: Check) -> float:
        return check.points if self.outcomes.get(check.grade_id) == "pass" else 0.0

    def auto(self, course: Course) -> float:
        return sum(self.points(check) for check in course.checks)


def grade_one(entry: Path, student: str, course: Course, base: Path, settings: Settings, feedback: Path | None) -> Graded:
    """Find, prepare, run and measure one submission, and write its feedback; never raises for a student's
    mistake (the reason goes into the result)."""
    graded = Graded(student, entry)
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        work, log = None, ""
        try:
            found = find_submission(entry, Path(scratch), course)
        except NotGradable as error:
            graded.problem = str(error)
            graded.outcomes = {check.grade_id: "not graded" for check in course.checks}
        else:
            graded.notes += found.notes
            for n, copy in sorted(found.notebooks.items()):
                done = f"{copy.done} of {len(copy.course.solutions)} exercises done" if copy.course.solutions else "its exercises are in the modules"
                line = f"notebook {n}: from {copy.where} ({done})"
                graded.found.append(line + (f", {found.choices[n]}" if n in found.choices else ""))
            graded.choices = [f"notebook {n}: took {found.notebooks[n].where} {found.choices[n]}" for n in sorted(found.choices)]
            graded.found += [f"{relative}: from {found.shown[relative]}" for relative in course.modules if relative in found.modules]
            graded.found.append(f"model: from {found.shown[handin.STUDENT_MODEL]}" if found.model else "model: none handed in")
            work = Path(scratch) / "course"
            graded.outcomes, graded.answers, notes = prepare_copy(found, base, work, course, settings.cache)
            graded.notes += notes
            results, graded.stopped, log = run_submission(work, course, settings)
            graded.notebooks = results["notebooks"]
            for check in course.checks:
                if check.grade_id not in graded.outcomes:
                    run = graded.notebooks.get(check.notebook, {})
                    reason = graded.stopped if graded.stopped and run.get("status") in (None, "running") else (run.get("reason") or "did not run")
                    graded.outcomes[check.grade_id] = results["checks"].get(check.grade_id) or f"not run: {reason}"
            graded.model = measure_model(work, settings) if found.model is not None else {}
        if feedback is not None:
            write_feedback(graded, course, feedback / student, work, settings, log)
    graded.seconds = time.perf_counter() - tic
    return graded


# ---------------------------------------------------------------------------------------------------------
# Feedback
# ---------------------------------------------------------------------------------------------------------
def write_feedback(graded: Graded, course: Course, folder: Path, work: Path | None, settings: Settings, log: str) -> None:
    """Write a student's feedback folder: ``report.md``, the executed notebooks of ``work`` (and their HTML, with
    ``settings.html``) and the run's log. It replaces an earlier grading's folder once it is complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    building.chmod(0o755)
    try:
        for known in course.notebooks if work is not None else []:
            executed = work / GRADE_DIR / known.name
            if not executed.is_file():
                continue
            shutil.copy2(executed, building / known.name)
            if settings.html:
                try:
                    from nbconvert import HTMLExporter

                    body, _ = HTMLExporter().from_filename(str(executed))
                    (building / known.name).with_suffix(".html").write_text(body, encoding="utf-8")
                except Exception as error:  # a notebook nbconvert cannot render keeps its .ipynb
                    (building / f"{Path(known.name).stem}.html-failed.txt").write_text(f"{type(error).__name__}: {error}\n")
        if log:
            (building / "run.log").write_text(log, encoding="utf-8")
        (building / "report.md").write_text(report_text(graded, course, quick=settings.env.get("FKP_QUICK") == "1"), encoding="utf-8")
        from course.release import replace_folder

        replace_folder(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def notebook_lines(graded: Graded, course: Course) -> list[str]:
    lines = []
    for known in course.notebooks:
        run = graded.notebooks.get(known.name)
        if run is None:
            lines.append(f"- {known.name}: did not run ({graded.stopped or 'the grading process stopped before it'})")
            continue
        seconds = f"{run['seconds']:.0f} s"
        if run["status"] == "complete":
            text = f"ran to the end in {seconds}"
        elif run["status"] == "stopped":
            text = f"stopped after {seconds}: {run['reason']}; the cells after it did not run"
        else:
            text = f"stopped: {graded.stopped}"
        if run.get("timeouts"):
            text += "; interrupted at the time limit: " + ", ".join(run["timeouts"])
        lines.append(f"- {known.name}: {text}")
    return lines


def model_text(model: dict) -> str:
    if not model:
        return f"no {handin.STUDENT_MODEL} handed in"
    if "problem" in model:
        return model["problem"]
    return (f"test NME_io {model['nme_io']:.4f} on {model['faces']} test faces ({model['fr10']:.1%} of them above 0.10), "
            f"{model.get('architecture')}, {model.get('input_size')} px input")


def cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_text(graded: Graded, course: Course, quick: bool = True) -> str:
    """The text of ``report.md``: points, each check's outcome, what was graded, how the notebooks ran, the model,
    the written answers (markdown)."""
    lines = [f"# Feedback: {graded.student}", ""]
    if graded.problem:
        return "\n".join([*lines, f"**Not graded:** {graded.problem}."]) + "\n"
    else:
        hand = sum(a.points for a in course.answers)
        mode = ("in quick mode (small subsets, a short training: the checks test the code, not the training)" if quick
                else "in full (the whole dataset, the full training)")
        lines += [f"**Checks: {graded.auto(course):g} of {course.max_auto:g} points.** "
                  f"Written answers: {hand:g} point{'s' if hand != 1 else ''}, graded by hand.", "",
                  f"**Your model** ({handin.STUDENT_MODEL}): {model_text(graded.model)}.", "",
                  f"The notebooks ran from the top {mode}, with the course's check cells.", "", "## What was graded", ""]
        lines += [f"- {line}" for line in graded.found + graded.notes]
        lines += ["", "## Checks", "", "| notebook | check | points | outcome |", "|---|---|---|---|"]
        for check in course.checks:
            lines.append(f"| {course.number(check.notebook)} | {check.grade_id} | {graded.points(check):g} / {check.points:g} | "
                         f"{cell_text(graded.outcomes.get(check.grade_id, ''))} |")
        lines += ["", "## How the notebooks ran", "", *notebook_lines(graded, course)]
        if graded.stopped:
            lines += ["", f"The grading of this submission stopped early: {graded.stopped}."]
    lines += ["", "## Written answers (graded by hand)", ""]
    for answer in course.answers:
        text = graded.answers.get(answer.grade_id, "")
        quoted = "\n".join(f"> {line}" for line in text.splitlines()) if text else "_(no answer)_"
        lines += [f"### {answer.grade_id} (notebook {course.number(answer.notebook)}, {answer.points:g} point{'s' if answer.points != 1 else ''})", "", quoted, ""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", newline="", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        csv.writer(f).writerows(rows)
    os.replace(f.name, path)


def hand_points(value: str, answer: Answer, student: str) -> float:
    """The points filled in for a written answer (0 when empty); GradeError for a value that is not a number of
    points between 0 and the answer's maximum."""
    if not value.strip():
        return 0.0
    try:
        points = float(value)
    except ValueError:
        raise GradeError(f"{student}, {answer.grade_id}: {value!r} is not a number of points") from None
    if not 0 <= points <= answer.points:
        raise GradeError(f"{student}, {answer.grade_id}: {value} is outside 0 to {answer.points:g} points")
    return points


def write_tables(grades: Sequence[Graded], course: Course, out: Path) -> Path:
    """Write the points table to ``out`` and the outcomes beside it (``*.details.csv``), each atomically. Points
    already filled in for written answers in an existing ``out`` are kept."""
    kept = {row.get("student", ""): row for row in read_rows(out)} if out.is_file() else {}
    header = ["student", "status", *[c.grade_id for c in course.checks], "auto", *[a.grade_id for a in course.answers], "total", "test_nme_io", "notes"]
    rows: list[list[Any]] = [header, ["(maximum)", "", *[f"{c.points:g}" for c in course.checks], f"{course.max_auto:g}",
                                      *[f"{a.points:g}" for a in course.answers], f"{course.max_total:g}", "", ""]]
    details = [["student", "notebook", "check", "points", "max_points", "outcome"]]
    for graded in grades:
        earlier = kept.get(graded.student, {})
        filled = [earlier.get(a.grade_id, "") for a in course.answers]
        try:
            hand = sum(hand_points(value, answer, graded.student) for value, answer in zip(filled, course.answers))
        except GradeError:
            hand = 0.0
        status = f"not graded: {graded.problem}" if graded.problem else ("graded" if not graded.stopped else f"graded, stopped early: {graded.stopped}")
        nme = f"{graded.model['nme_io']:.4f}" if "nme_io" in graded.model else ""
        notes = [*graded.choices, *graded.notes, *(f"{name}: {run['reason']}" for name, run in graded.notebooks.items() if run.get("reason"))]
        notes += [f"{name}: interrupted at the time limit: {', '.join(run['timeouts'])}" for name, run in graded.notebooks.items()
                  if run.get("timeouts")]
        if "problem" in graded.model and graded.model["problem"] != f"no {handin.STUDENT_MODEL} handed in":
            notes.append(f"model: {graded.model['problem']}")
        rows.append([graded.student, status, *[f"{graded.points(c):g}" for c in course.checks], f"{graded.auto(course):g}",
                     *filled, f"{graded.auto(course) + hand:g}", nme, "; ".join(notes)])
        details += [[graded.student, c.notebook, c.grade_id, f"{graded.points(c):g}", f"{c.points:g}", graded.outcomes.get(c.grade_id, "")]
                    for c in course.checks]
        details += [[graded.student, a.notebook, a.grade_id, "", f"{a.points:g}",
                     "written answer: grade by hand" if graded.answers.get(a.grade_id) else "no answer"] for a in course.answers]
    details_path = out.with_name(f"{out.stem}.details.csv")
    write_csv(out, rows)
    write_csv(details_path, details)
    return details_path


def retotal(path: Path, course: Course) -> int:
    """Recompute the ``total`` column of a grades table after the written answers' points were filled in."""
    rows = read_rows(path)
    if not rows or "auto" not in rows[0] or "total" not in rows[0]:
        raise GradeError(f"{path} is not a table written by this command (no auto and total columns)")
    header = list(rows[0].keys())
    for row in rows:
        if row["student"] == "(maximum)":
            continue
        hand = sum(hand_points(row.get(a.grade_id, ""), a, row["student"]) for a in course.answers)
        row["total"] = f"{float(row['auto'] or 0) + hand:g}"
    write_csv(path, [header, *[[row.get(key, "") for key in header] for row in rows]])
    return len(rows) - 1


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------
def submissions_in(folder: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every entry of ``folder``, one per student (hidden files and the command's own outputs left out)."""
    if not folder.is_dir():
        raise GradeError(f"{folder} is not a folder: give the folder that holds one zip file or folder per student")
    skipped = {Path(p).resolve() for p in skip}
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.resolve() not in skipped)
    if not entries:
        raise GradeError(f"{folder} is empty: put each student's hand-in (zip file) or course folder in it")
    return entries


def student_names(entries: Sequence[Path]) -> list[str]:
    """A name per entry: the folder's name or the file's name without its extension, unless two would clash."""
    stems = [entry.name if entry.is_dir() else entry.stem for entry in entries]
    return [stem if stems.count(stem) == 1 else entry.name for stem, entry in zip(stems, entries)]


def grading_env(full: bool, data: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CI", "FKP_QUICK", "JPY_SESSION_NAME")}
    env.update({"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", handin.GRADING_ENV_VAR: "1", "OMP_NUM_THREADS": "1"})
    if not full:
        env["FKP_QUICK"] = "1"
    if data:
        env["FKP_DATA"] = str(Path(data).resolve())
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("submissions", nargs="?", help="folder with one zip file or folder per student")
    parser.add_argument("--out", default="grades.csv", help="the points table (default: grades.csv); outcomes go to *.details.csv")
    parser.add_argument("--feedback", help="folder for each student's executed notebooks and report (default: feedback/ beside --out)")
    parser.add_argument("--timeout", type=float, default=SUBMISSION_TIMEOUT, help=f"seconds for one whole submission (default: {SUBMISSION_TIMEOUT})")
    parser.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT, help=f"seconds for one cell (default: {CELL_TIMEOUT})")
    parser.add_argument("--model-timeout", type=float, default=MODEL_TIMEOUT,
                        help=f"seconds to measure a handed-in model on the test set (default: {MODEL_TIMEOUT})")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="submissions graded at the same time (default: 2)")
    parser.add_argument("--full", action="store_true", help="run the notebooks in full, not in quick mode (much longer training)")
    parser.add_argument("--no-html", action="store_true", help="keep the executed notebooks without their HTML copies")
    parser.add_argument("--data", help="the dataset folder (default: $FKP_DATA)")
    parser.add_argument("--course", default=str(REPO_DIR), help="the instructors' course folder (default: this repository)")
    parser.add_argument("--cache", help="caches linked into each submission's copy, so that its notebooks do not rebuild them "
                        "(default: the course folder's .cache/, the face crops your own runs cut)")
    parser.add_argument("--totals", metavar="TABLE", help="recompute the total column of TABLE after filling in the written answers, then stop")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_one:
        run_notebooks(Path(args.run_one))
        return 0
    try:
        course = load_course(args.course)
        if args.totals:
            count = retotal(Path(args.totals), course)
            print(f"updated the totals of {count} students in {args.totals}")
            return 0
        if not args.submissions:
            raise GradeError("give the folder of submissions: python -m course.grade SUBMISSIONS")
        if args.jobs < 1 or args.timeout <= 0 or args.cell_timeout <= 0 or args.model_timeout <= 0:
            raise GradeError("--jobs and the time limits must be positive")
        out = Path(args.out)
        feedback = Path(args.feedback) if args.feedback else out.parent / "feedback"
        entries = submissions_in(Path(args.submissions), skip=[out, out.with_name(f"{out.stem}.details.csv"), feedback])
        env = grading_env(args.full, args.data)
        data = env.get("FKP_DATA")
        if not data or not Path(data).is_dir():
            raise GradeError("the dataset is needed: set FKP_DATA or pass --data with the dataset folder (submissions leave data/ out)")
    except (GradeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    cache = Path(args.cache) if args.cache else course.folder / ".cache"
    settings = Settings(args.timeout, args.cell_timeout, args.model_timeout, env, not args.no_html, cache if cache.is_dir() else None)
    tic = time.perf_counter()
    names = student_names(entries)
    with tempfile.TemporaryDirectory(prefix="grade-release-") as scratch:
        from course.release import write_release

        base = Path(scratch) / "release"
        base.mkdir()
        write_release(course.folder, base)  # what students got: everything they did not hand in comes from it
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(grade_one, entry, name, course, base, settings, feedback) for entry, name in zip(entries, names)]
            grades = []
            for future in futures:
                graded = future.result()
                grades.append(graded)
                if graded.problem:
                    print(f"{graded.student}: not graded: {graded.problem}")
                else:
                    model = f"; model: test NME_io {graded.model['nme_io']:.4f}" if "nme_io" in graded.model else ""
                    stopped = f"; stopped early: {graded.stopped}" if graded.stopped else ""
                    print(f"{graded.student}: {graded.auto(course):g} / {course.max_auto:g} points ({graded.seconds:.0f} s){model}{stopped}")
    details = write_tables(grades, course, out)
    answers = f"{len(course.answers)} written answer{'s' if len(course.answers) != 1 else ''}"
    print(f"wrote {out}, {details} and {feedback}/ ({len(grades)} submissions, {len(course.checks)} checks, "
          f"{answers} to grade by hand, {time.perf_counter() - tic:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
