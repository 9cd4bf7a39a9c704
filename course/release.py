"""Make the student release of the course: the same files, with every solution replaced by a stub.

    python -m course.release               # writes release/ (ignored by git)
    python -m course.release --out DIR     # writes DIR instead
    python -m course.release --repo-url https://github.com/OWNER/NAME   # where the students' repository will live

One source holds the solutions, marked the way nbgrader marks them, and the student version is generated from
it, so the two never drift apart:

* In ``.py`` files and notebook code cells, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
  ``# YOUR CODE HERE`` and ``raise NotImplementedError("...")``, indented like the BEGIN line. In a notebook the
  message names what the cell defines and points to the TODO above; in a module it names the function and file
  and the notebook that asks for it (``# TODO (notebook 2): ...``), because the error may surface in a later
  notebook or on the command line.
* In markdown cells the marked lines become ``YOUR ANSWER HERE``. A cell marked as a solution in its nbgrader
  metadata but without markers is replaced whole, as nbgrader does.
* Notebook outputs and execution counts are cleared; check cells (nbgrader ``grade: true``) are made read-only
  and undeletable, solution cells undeletable, as nbgrader's generate_assignment does.
* Everything else is copied unchanged, except what git ignores (``.gitignore``: data, caches, outputs, earlier
  releases, ...) and the files only instructors use (``INSTRUCTOR_ONLY``): the tests, CI, the test suite's settings,
  this script, the grading command (``course/grade.py``) with its page ``docs/grading.md`` and benchmark, the
  instructors' page (``docs/instructors.md``), the stored answers' generator (``course/expected.py``), and the trainers
  of the shipped models, which hold complete training steps; and the README's section for instructors (its test
  command, between ``<!-- BEGIN INSTRUCTORS -->`` and ``<!-- END INSTRUCTORS -->``).
* Last, every released text file is searched for the solutions' code (``find_leaks``): a release that still holds
  one stops with a one-line message naming the file, the line and the solution.
* The repository's public address, ``course.notebook_helpers.REPO_URL`` (a placeholder in the source), is replaced in
  every file by ``--repo-url``: the notebooks' Colab badges and setup cells use it. Without ``--repo-url`` the
  release keeps the placeholder and the command warns; the setup cell then tells students to ask for the address.

The release is built in a temporary folder beside ``--out`` and then moved into place, so a failed run leaves the
previous release as it was. Problems in the source (an unbalanced marker, a solution in a cell without nbgrader
metadata) stop the run with a one-line message that names the file and line.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from course.notebook_helpers import REPO_URL

REPO_DIR = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE"
TEXT_STUB = "YOUR ANSWER HERE"
# A marker line: a comment (or markdown heading) that says BEGIN SOLUTION or END SOLUTION, as nbgrader reads them.
MARKER = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*(?P<kind>BEGIN|END) SOLUTION\b")
INSTRUCTORS = re.compile(r"\n?<!-- BEGIN INSTRUCTORS -->.*?<!-- END INSTRUCTORS -->\n?", re.DOTALL)
# Only instructors need these; they stay out of the release (paths relative to the course folder).
# ``.git`` is a folder in a clone and a file in a worktree or submodule; setup.cfg, requirements-dev.txt and
# mutation.sh are the mutation testing of the tests; docs/instructors.md is the instructors' page, docs/grading.md
# and grading_time.py are grading's page and benchmark; conftest.py holds the test suite's settings; course/expected.py
# computes the checks' stored answers from the solutions. The trainers of the shipped models (their presets and loops,
# train.py that runs them, the epoch benchmark), of the second stage, of the face score's refit and of the learned
# face detector each hold a complete training step,
# which students write themselves in notebook 2: they stay out too.
INSTRUCTOR_ONLY = ("course/release.py", "course/grade.py", "course/expected.py", "tests/", ".ci/", "conftest.py", "pytest.ini",
                   "requirements-test.txt", ".git/", ".git", "setup.cfg", "requirements-dev.txt", "benchmarks/mutation.sh",
                   "docs/instructors.md", "docs/grading.md", "benchmarks/grading_time.py", "pipeline/trainer.py", "train.py",
                   "benchmarks/epoch_time.py", "pipeline/detector_training.py", "pipeline/refinement.py", "pipeline/face_score_refit.py")
# A solution line counts as leaked when a released file holds it and it is this long, or when a released file holds
# it next to the line that follows it in the solution (shorter lines alone are idioms: ``model.eval()``, ``else:``).
LEAK_MIN_CHARS = 40
# Lines of solutions that the released library must hold too, for its own work: the pipeline turns pictures gray and
# runs models in evaluation mode, without gradients, on their own device. They are idioms, not the answer to a TODO,
# and are not counted as leaks, alone or next to another line.
LIBRARY_IDIOMS = (
    "gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image",  # pipeline/inference.py cut_crops
    "gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)",  # pipeline/no_faces.py
    "device = next(model.parameters()).device",  # pipeline/explain.py
    "model.eval()",  # course/notebook_helpers.py layer_shapes, pipeline/explain.py
    "with torch.no_grad():",  # the same, models.py
)
# The TODO comment above a module's solution, and the notebook it names: "# TODO (notebook 2): ...".
TODO_COMMENT = re.compile(r"^\s*#\s*TODO(?:\s*\((?P<where>[^)]*)\))?:")
# The repository's public address as the source holds it, and the form --repo-url must take.
PLACEHOLDER_REPO_URL = REPO_URL
GITHUB_URL = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Never copied, wherever they are, even without a .gitignore.
ALWAYS_SKIPPED = ("__pycache__/", ".ipynb_checkpoints/", ".pytest_cache/", "*.pyc")
MANIFEST = ".release.json"
# Metadata a notebook run leaves behind, removed from released cells and notebooks.
RUN_STATE_CELL_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled")
RUN_STATE_NOTEBOOK_KEYS = ("widgets",)


class ReleaseError(Exception):
    """A problem in the source or the destination, told in one line that names the file and line."""


@dataclass
class Stub:
    """One solution replaced in the release."""

    path: str  # relative to the course folder
    line: int  # 1-based line of the BEGIN marker in the file (.py) or in the cell (notebooks); 0 for a whole cell
    name: str  # what the student writes there
    cell: int | None = None  # 1-based cell number in a notebook
    kind: str = "code"  # code | answer


@dataclass
class Report:
    files: list[str] = field(default_factory=list)
    stubs: list[Stub] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Solution regions
# ---------------------------------------------------------------------------------------------------------
def replace_regions(lines: list[str], where: str, stub: Callable[[str, list[str], int], list[str]]) -> tuple[list[str], list[int]]:
    """Replace each BEGIN ... END SOLUTION region of ``lines`` (no line endings) by ``stub(indent, region, line)``.

    Returns the new lines and the 1-based line numbers of the BEGIN markers. ``where`` names the text in errors.
    """
    out: list[str] = []
    starts: list[int] = []
    begin: int | None = None
    region: list[str] = []
    indent = ""
    for number, line in enumerate(lines, start=1):
        marker = MARKER.match(line)
        if marker and marker["kind"] == "BEGIN":
            if begin is not None:
                raise ReleaseError(f"{where}:{number}: BEGIN SOLUTION inside the region opened at line {begin}: close it with {END} first")
            begin, region, indent = number, [], marker["indent"]
        elif marker:
            if begin is None:
                raise ReleaseError(f"{where}:{number}: END SOLUTION without a BEGIN SOLUTION before it")
            out += stub(indent, region, begin)
            starts.append(begin)
            begin = None
        elif begin is not None:
            region.append(line)
        else:
            out.append(line)
    if begin is not None:
        raise ReleaseError(f"{where}:{begin}: BEGIN SOLUTION without a matching {END}")
    return out, starts


def _qualname_at(tree: ast.AST, line: int) -> str | None:
    """The dotted name of the innermost class or function around ``line`` (``Net.__init__``), or None."""
    best: str | None = None

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and child.lineno <= line <= (child.end_lineno or child.lineno):
                best = f"{prefix}{child.name}"
                visit(child, f"{best}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return best


def _defined_names(code: str) -> list[str]:
    """The names a piece of code defines at its top level (assignments, functions, classes), in order."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id not in names:
                    names.append(sub.id)
    return names


def _code_stub(indent: str, message: str) -> list[str]:
    return [f"{indent}{CODE_STUB}", f"{indent}raise NotImplementedError({json.dumps(message)})"]


def _what_a_cell_defines(code: str) -> str:
    names = _defined_names(code)
    return f"write {' and '.join(names) if len(names) <= 2 else ', '.join(names[:-1]) + ' and ' + names[-1]}" if names else "fill in this cell"


def _what_to_write(cell_source: str, region: list[str], line: int) -> str:
    """What a notebook code cell's solution region asks for: the function around it, else the names it defines."""
    python = "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in cell_source.splitlines())  # no magics
    try:
        qualname = _qualname_at(ast.parse(python), line)
    except SyntaxError:
        qualname = None
    return f"write {qualname}" if qualname else _what_a_cell_defines("\n".join(region))


def _todo_place(lines: list[str], line: int) -> str | None:
    """What the TODO comment just above 1-based ``line`` names as its place ("notebook 2"), or None."""
    for text in reversed(lines[: line - 1]):
        if not text.strip().startswith("#"):
            return None
        todo = TODO_COMMENT.match(text)
        if todo:
            return todo["where"]
    return None


def module_stub_message(what: str, place: str | None) -> str:
    """The message of a module's stub: what is missing, where its TODO is, and what to do next."""
    todo = f"its TODO ({place})" if place else "the TODO above it"
    return f"{what} is not written yet: fill in {todo}, save the file and run this again"


def release_python(text: str, where: str) -> tuple[str, list[Stub]]:
    """A .py file's text with its solutions stubbed, and the stubs."""
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ReleaseError(f"{where}:{error.lineno}: not valid Python ({error.msg})") from None
    name = where  # the file's path in the course (pipeline/training.py), so the message says where to look
    stubs: list[Stub] = []

    def stub(indent: str, region: list[str], line: int) -> list[str]:
        qualname = _qualname_at(tree, line)
        what = f"{qualname} in {name}" if qualname else f"{name}, line {line}"
        stubs.append(Stub(where, line, what))
        return _code_stub(indent, module_stub_message(what, _todo_place(source_lines, line)))

    source_lines = text.splitlines()
    lines, _ = replace_regions(source_lines, where, stub)
    released = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    try:
        compile(released, where, "exec")
    except SyntaxError as error:
        raise ReleaseError(f"{where}:{error.lineno}: not valid Python once its solutions are stubbed ({error.msg}): "
                           "put each BEGIN/END SOLUTION pair around whole statements") from None
    return released, stubs


# ---------------------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------------------
def nbgrader_meta(cell: dict) -> dict:
    """A cell's nbgrader metadata ({} when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def release_notebook(notebook, where: str) -> list[Stub]:
    """Stub the solutions of an nbformat 4 notebook in place, clear its outputs and lock its check cells."""
    stubs: list[Stub] = []
    grade_ids: dict[str, int] = {}
    for number, cell in enumerate(notebook.cells, start=1):
        here = f"{where} cell {number}"
        meta = nbgrader_meta(cell)
        is_solution, is_graded = bool(meta.get("solution")), bool(meta.get("grade"))
        if meta:
            grade_id = meta.get("grade_id")
            missing = [key for key in ("grade", "solution", "locked", "grade_id") if key not in meta or meta[key] in ("", None)]
            if missing:
                raise ReleaseError(f"{here}: nbgrader metadata without {', '.join(missing)} (nbgrader schema 3 needs them)")
            if cell.cell_type == "markdown" and is_graded != is_solution and not meta.get("task"):
                raise ReleaseError(f"{here}: markdown answer {grade_id!r} must be marked both grade and solution, as nbgrader wants")
            if grade_id in grade_ids:
                raise ReleaseError(f"{here}: grade_id {grade_id!r} is also used by cell {grade_ids[grade_id]}; grade ids must be unique")
            grade_ids[grade_id] = number
            if is_graded and not isinstance(meta.get("points"), (int, float)):
                raise ReleaseError(f"{here}: graded cell {grade_id!r} has no points in its nbgrader metadata")
        source = cell.source
        kind = "answer" if cell.cell_type != "code" else "code"

        def stub(indent: str, region: list[str], line: int, number: int = number, cell=cell) -> list[str]:
            if cell.cell_type == "code":
                what = _what_to_write(source, region, line)
                stubs.append(Stub(where, line, what, number, "code"))
                return _code_stub(indent, f"{what}: see the TODO above")
            stubs.append(Stub(where, line, "answer", number, "answer"))
            return [f"{indent}{TEXT_STUB}"]

        lines, starts = replace_regions(source.splitlines(), here, stub)
        if starts and not is_solution:
            raise ReleaseError(f"{here}:{starts[0]}: a solution region in a cell not marked as a solution: "
                               'add "nbgrader": {"solution": true, "grade_id": ...} to the cell\'s metadata')
        if starts:
            cell.source = "\n".join(lines)
        elif is_solution:  # a solution cell without markers is replaced whole, as nbgrader does
            if cell.cell_type == "code":
                what = _what_a_cell_defines(source)
                cell.source = "\n".join(_code_stub("", f"{what}: see the TODO above"))
            else:
                what, cell.source = "answer", TEXT_STUB
            stubs.append(Stub(where, 0, what, number, kind))
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_STATE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if meta:
            cell.metadata["deletable"] = False
            if not is_solution and (is_graded or meta.get("locked")):
                cell.metadata["editable"] = False
    for key in RUN_STATE_NOTEBOOK_KEYS:
        notebook.metadata.pop(key, None)
    return stubs


# ---------------------------------------------------------------------------------------------------------
# Which files
# ---------------------------------------------------------------------------------------------------------
def ignore_patterns(source: Path, always: Sequence[str] = ALWAYS_SKIPPED) -> list[str]:
    """The patterns of ``source``/.gitignore (comments, blanks and negations left out), plus ``always``."""
    patterns = list(always)
    gitignore = source / ".gitignore"
    if gitignore.is_file():
        for line in gitignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                patterns.append(line)
    return patterns


def is_ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    """Whether a path (posix, relative to the course folder) matches a .gitignore pattern.

    The subset of gitignore used here: ``name/`` matches folders, a pattern with a slash inside matches the path
    from the top, any other pattern matches a file or folder name anywhere.
    """
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if directory_only and not is_dir:
            continue
        if "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def release_files(source: Path, skip: Sequence[Path] = ()) -> list[str]:
    """Every file of the course that goes into a release (posix paths relative to ``source``), sorted. A folder's own
    .gitignore applies below it, as in git (the ``*`` that tool caches such as ``.ruff_cache/`` hold)."""
    rules = {"": [("", ignore_patterns(source))]}  # folder prefix -> (prefix of a .gitignore's folder, its patterns)
    skip_resolved = {p.resolve() for p in skip}
    files = []
    for root, dirs, names in os.walk(source):
        root_path = Path(root)
        relative_root = root_path.relative_to(source).as_posix()
        prefix = "" if relative_root == "." else f"{relative_root}/"
        here = rules.pop(prefix)
        if prefix and (root_path / ".gitignore").is_file():
            here = here + [(prefix, ignore_patterns(root_path, always=()))]

        def ignored(relative: str, is_dir: bool) -> bool:
            return any(is_ignored(relative[len(base):], is_dir, patterns) for base, patterns in here)

        kept = []
        for d in sorted(dirs):
            relative = f"{prefix}{d}"
            if (root_path / d).resolve() in skip_resolved or ignored(relative, True) or f"{relative}/" in INSTRUCTOR_ONLY:
                continue
            if d.endswith(".tmp") or (root_path / d / MANIFEST).exists():  # releases being built, or made elsewhere
                continue
            kept.append(d)
            rules[f"{relative}/"] = here
        dirs[:] = kept
        for n in sorted(names):
            relative = f"{prefix}{n}"
            if not ignored(relative, False) and relative not in INSTRUCTOR_ONLY and not (root_path / n).is_symlink():
                files.append(relative)
    return sorted(files)


# ---------------------------------------------------------------------------------------------------------
# No solution left anywhere
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Leak:
    """A released file's line that belongs to a solution."""

    path: str  # the released file, relative to the release
    line: int  # 1-based, in the file (.py, text) or in the notebook's cells read one after the other
    text: str  # the line, stripped
    solution: str  # the file (and cell) the solution region is in


def text_lines(path: Path) -> list[str]:
    """The lines of a text file; of a notebook, its cells' sources one after the other."""
    if path.suffix == ".ipynb":
        import nbformat

        return [line for cell in nbformat.read(path, as_version=4).cells for line in cell.source.splitlines()]
    return path.read_text(encoding="utf-8").splitlines()


def solution_regions(source: Path) -> dict[str, list[str]]:
    """Every solution region of the course's .py files and notebooks: {"file" or "file cell N": its code lines,
    stripped, without blanks and comments}. Model answers of written questions are left out: prose is not code."""
    import nbformat

    regions: dict[str, list[str]] = {}

    def collect(lines: list[str], where: str) -> None:
        inside: list[str] | None = None
        count = 0
        for line in lines:
            marker = MARKER.match(line)
            if marker and marker["kind"] == "BEGIN":
                inside, count = [], count + 1
            elif marker:
                regions[f"{where} ({count})" if count > 1 or where in regions else where] = inside or []
                inside = None
            elif inside is not None and line.strip() and not line.strip().startswith("#"):
                inside.append(line.strip())

    for relative in release_files(source):
        if relative.endswith(".py"):
            collect((source / relative).read_text(encoding="utf-8").splitlines(), relative)
        elif relative.endswith(".ipynb"):
            for number, cell in enumerate(nbformat.read(source / relative, as_version=4).cells, start=1):
                if cell.cell_type == "code":
                    collect(cell.source.splitlines(), f"{relative} cell {number}")
    return regions


def find_leaks(target: Path, files: Sequence[str], regions: dict[str, list[str]]) -> list[Leak]:
    """The lines of the released ``files`` (text files, read whole; binary ones skipped) that hold solution code: a
    line of a solution region at least LEAK_MIN_CHARS long, or two lines that follow each other in a solution and
    in the file; LIBRARY_IDIOMS excepted."""
    long_lines: dict[str, str] = {}
    pairs: dict[tuple[str, str], str] = {}
    for where, lines in regions.items():
        for line in lines:
            if len(line) >= LEAK_MIN_CHARS and line not in LIBRARY_IDIOMS:
                long_lines.setdefault(line, where)
        for first, second in zip(lines, lines[1:]):
            if not {first, second} & set(LIBRARY_IDIOMS):
                pairs.setdefault((first, second), where)
    leaks = []
    for relative in files:
        try:
            lines = [line.strip() for line in text_lines(target / relative)]
        except (UnicodeDecodeError, ValueError):
            continue  # a binary file: models, pictures, stored values
        except Exception:  # an unreadable notebook is reported when it is released, not here
            continue
        for number, line in enumerate(lines, start=1):
            if line in long_lines:
                leaks.append(Leak(relative, number, line, long_lines[line]))
            elif number < len(lines) and (line, lines[number]) in pairs:
                leaks.append(Leak(relative, number, f"{line} / {lines[number]}", pairs[line, lines[number]]))
    return leaks


# ---------------------------------------------------------------------------------------------------------
# The release
# ---------------------------------------------------------------------------------------------------------
def stamp_repo_url(text: str, repo_url: str | None) -> str:
    """``text`` with the placeholder address replaced by ``repo_url`` (its Colab badges follow, being built on the
    GitHub path); unchanged when ``repo_url`` is None."""
    if repo_url is None:
        return text
    slug = lambda url: url.rstrip("/").removeprefix("https://github.com/")  # OWNER/NAME
    return text.replace(slug(PLACEHOLDER_REPO_URL), slug(repo_url))


def check_repo_url(repo_url: str | None) -> None:
    """Raise ReleaseError unless ``repo_url`` is None or a GitHub repository's address (Colab opens notebooks from
    GitHub)."""
    if repo_url is not None and not GITHUB_URL.match(repo_url.rstrip("/")):
        raise ReleaseError(f"--repo-url {repo_url!r} is not a GitHub repository's address: give https://github.com/OWNER/NAME")
    if repo_url is not None and repo_url.rstrip("/") == PLACEHOLDER_REPO_URL:
        raise ReleaseError(f"--repo-url {repo_url} is the placeholder: give the address where the students' repository will live")


def write_release(source: Path, target: Path, repo_url: str | None = None) -> Report:
    """Write the release of ``source`` into the empty folder ``target``, with ``repo_url`` as the repository's
    public address (None: keep the placeholder)."""
    import nbformat

    report = Report()
    for relative in release_files(source, skip=[target]):
        src, dst = source / relative, target / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".py"):
            text, stubs = release_python(src.read_text(encoding="utf-8"), relative)
            dst.write_text(stamp_repo_url(text, repo_url), encoding="utf-8")
            report.stubs += stubs
        elif relative.endswith(".ipynb"):
            try:
                notebook = nbformat.read(src, as_version=4)
            except Exception as error:  # nbformat raises several types for unreadable files
                raise ReleaseError(f"{relative}: not a readable notebook ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
            report.stubs += release_notebook(notebook, relative)
            for cell in notebook.cells:
                cell.source = stamp_repo_url(cell.source, repo_url)
            nbformat.validate(notebook)
            nbformat.write(notebook, dst)
        elif relative == "README.md":
            readme = INSTRUCTORS.sub("", src.read_text(encoding="utf-8"))
            dst.write_text(stamp_repo_url(readme, repo_url), encoding="utf-8")
        else:
            shutil.copy2(src, dst)
            continue
        shutil.copymode(src, dst)
    report.files = release_files(target)
    leftovers = [f for f in report.files if f.endswith((".py", ".ipynb")) and any(MARKER.match(line) for line in (target / f).read_text(encoding="utf-8").splitlines())]
    if leftovers:  # cannot happen unless a marker hides in JSON strings the notebook reader does not see
        raise ReleaseError(f"{leftovers[0]}: a solution marker is left in the release")
    leaks = find_leaks(target, report.files, solution_regions(source))
    if leaks:
        leak = leaks[0]
        raise ReleaseError(f"{leak.path}:{leak.line}: holds the solution of {leak.solution} ({leak.text!r}): move that code out of "
                           "the release (INSTRUCTOR_ONLY) or write it differently")
    manifest = {"made_by": "course/release.py", "files": report.files, "stubs": [asdict(s) for s in report.stubs]}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return report


def replace_folder(new: Path, folder: Path) -> None:
    """Put the complete folder ``new`` in the place of ``folder`` (its sibling) with renames: the old one is moved
    aside first and deleted last, so ``folder`` is never half-written."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", suffix=".tmp", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, folder)


def make_release(out: str | os.PathLike = REPO_DIR / "release", source: str | os.PathLike = REPO_DIR,
                 repo_url: str | None = None) -> Report:
    """Build the release of ``source`` into ``out``, replacing an earlier release there only once the new one is
    complete. Refuses to replace a folder that is not a release. ``repo_url``: the students' repository on GitHub
    (None keeps the placeholder address)."""
    check_repo_url(repo_url)
    source, out = Path(source).resolve(), Path(out).resolve()
    if out == source or source.is_relative_to(out):
        raise ReleaseError(f"--out {out} would overwrite the course itself: choose another folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ReleaseError(f"{out} exists and is not a release made by course/release.py (no {MANIFEST}): remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        report = write_release(source, building, repo_url)
        building.chmod(0o755)
        replace_folder(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--out", default=str(REPO_DIR / "release"), help="where to write the release (default: release/)")
    parser.add_argument("--repo-url", help="the students' repository, https://github.com/OWNER/NAME: stamped into "
                        "the notebooks' Colab badges and setup cells (without it they keep a placeholder)")
    parser.add_argument("--source", default=str(REPO_DIR), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        report = make_release(args.out, args.source, args.repo_url)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    notebooks = sorted({s.path for s in report.stubs if s.path.endswith(".ipynb")})
    modules = sorted({s.path for s in report.stubs if s.path.endswith(".py")})
    code = [s for s in report.stubs if s.kind == "code"]
    print(f"wrote {args.out}: {len(report.files)} files; {len(code)} solutions stubbed "
          f"({sum(s.path.endswith('.py') for s in code)} in {', '.join(modules) or 'no module'}, "
          f"{sum(s.path.endswith('.ipynb') for s in code)} in notebooks), "
          f"{len(report.stubs) - len(code)} written answers cleared, in {len(notebooks)} notebooks")
    if args.repo_url is None:
        print(f"warning: no --repo-url: the Colab badges and setup cells point to the placeholder {PLACEHOLDER_REPO_URL}; "
              "before publishing, run again with --repo-url https://github.com/OWNER/NAME", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
