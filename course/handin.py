"""Hand in your work: one file that holds everything graded, checked before you upload it.

In a notebook, the last cell of each one::

    from course import handin
    handin.hand_in()

On the command line, in the course folder::

    python -m course.handin                  # writes handin/facial-keypoints-handin.zip
    python -m course.handin --out FILE.zip   # writes FILE.zip instead

What goes in: the four course notebooks as they are now, the modules you edit (``GRADED_MODULES``) and, when
notebook 2 saved it, your trained model (``saved_models/student_net.pt``). Each notebook is taken from the best
copy found among

* on Colab, the notebook open in the page you run the cell from, read from the page itself, so that the answers of
  a notebook opened from a badge and never saved are handed in too;
* the course folder's notebooks and copies of them (``Copy of 2_Define_Train_Network.ipynb``,
  ``2_Define_Train_Network (1).ipynb``), in the course folder or, on Colab, in Drive's ``Colab Notebooks``;
* the notebooks of your previous hand-in, so that a hand-in made from notebook 4 keeps what you handed in from
  notebook 1 in an earlier session.

The copy with the most exercises done wins; between equals, the notebook open in the page, then the one saved
last. A notebook is known by its course metadata (``metadata["course"]["notebook"]``), else by its graded cells,
else by its file name. The new file is written beside the previous one and replaces it only once it is complete
and read back: every notebook readable and known, every module present and valid Python. What is still to do (a
notebook missing, a ``TODO`` left) is listed, and on Colab the browser downloads the file. Upload that file where
your course collects work; running the cell again makes a new one with your latest work.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from resources.files import file_sha256

REPO_DIR = Path(__file__).resolve().parents[1]
# The modules with the course's TODOs, relative to the course folder: what the student writes outside notebooks. The
# students' release lists them in its manifest (RELEASE_MANIFEST, made from the solution markers); this is the same
# list for a course folder without one.
GRADED_MODULES = ("data_load.py", "filters.py", "models.py")
RELEASE_MANIFEST = ".release.json"
# The model notebook 2 trains and saves; handed in when present, so that its accuracy can be measured.
STUDENT_MODEL = "saved_models/student_net.pt"
ARCHIVE = Path("handin") / "facial-keypoints-handin.zip"  # relative to the course folder
MANIFEST = "handin.json"  # inside the archive: what was handed in, and where each notebook came from
# The notebook-level metadata key that names a course notebook: metadata["course"] = {"notebook": 2}.
COURSE_KEY = "course"
# What the students' release puts in place of a solution.
CODE_STUB, TEXT_STUB = "# YOUR CODE HERE", "YOUR ANSWER HERE"
# The release's placeholder for code still to write: the comment, then the line that raises. A student may keep the
# comment above the code they write (nbgrader's habit); the solution is written once the raise is gone.
UNWRITTEN_CODE = re.compile(rf"^[ \t]*{re.escape(CODE_STUB)}[ \t]*\n(?:[ \t]*\n)*[ \t]*raise NotImplementedError\b", re.MULTILINE)
# Where Colab's "File > Save a copy in Drive" puts copies.
COLAB_NOTEBOOKS = Path("/content/drive/MyDrive/Colab Notebooks")
# Folders never searched for notebooks: data, caches, outputs, releases, environments.
SKIPPED_DIRS = frozenset({"data", ".cache", "outputs", "runs", "release", ".git", "__pycache__", ".ipynb_checkpoints", "handin",
                          "downloads", ".venv", "venv", "site-packages", "node_modules"})
GRADING_ENV_VAR = "FKP_GRADING"  # set while submissions are graded: the hand-in cells then do nothing


class HandinError(Exception):
    """A problem that stops the hand-in, told in one line that says what to do."""


# ---------------------------------------------------------------------------------------------------------
# Knowing the course's notebooks
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CourseNotebook:
    """One notebook of the course, as its course metadata and nbgrader cells describe it."""

    number: int
    name: str  # its file name in the course folder
    grade_ids: frozenset[str]  # every nbgrader cell
    check_sources: frozenset[str]  # the (stripped) sources of its check cells
    solutions: tuple[str, ...]  # grade_ids of the cells the student writes: code exercises and written answers


def nbgrader(cell: Any) -> dict:
    """A cell's nbgrader metadata ({} when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_check(cell: Any) -> bool:
    """A check cell: a graded code cell that is not a solution (nbgrader's autograder tests)."""
    meta = nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def course_number(notebook: Any) -> int | None:
    """The course number of a notebook from its metadata (``metadata["course"]["notebook"]``), or None."""
    meta = notebook.get("metadata", {}).get(COURSE_KEY)
    number = meta.get("notebook") if isinstance(meta, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def read_notebook(text: str | bytes) -> Any:
    """An nbformat 4 notebook from its JSON text; ValueError (one line) when it is not one."""
    import nbformat

    try:  # a notebook that breaks the schema in small ways (other editors do) is read all the same, without a word
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nbformat.reads(text if isinstance(text, str) else text.decode("utf-8"), as_version=4, capture_validation_error={})
    except Exception as error:  # nbformat and json raise several types for unreadable files
        raise ValueError(f"not a readable notebook ({type(error).__name__})") from None


def course_notebooks(folder: str | os.PathLike = REPO_DIR) -> list[CourseNotebook]:
    """The course notebooks at the top of ``folder`` (those with course metadata), in course order; of a notebook
    and its copies ("Copy of ..."), the one whose name is not a copy's."""
    found: list[CourseNotebook] = []
    paths = sorted(Path(folder).glob("*.ipynb"), key=lambda p: (canonical_stem(p.name) != p.stem.lower(), len(p.name), p.name))
    for path in paths:
        try:
            notebook = read_notebook(path.read_bytes())
        except (OSError, ValueError):
            continue
        number = course_number(notebook)
        if number is None or any(known.number == number for known in found):
            continue
        metas = [nbgrader(cell) for cell in notebook.cells]
        found.append(CourseNotebook(
            number, path.name,
            frozenset(m["grade_id"] for m in metas if m.get("grade_id")),
            frozenset(cell.source.strip() for cell in notebook.cells if is_check(cell)),
            tuple(m["grade_id"] for m in metas if m.get("solution") and m.get("grade_id")),
        ))
    return sorted(found, key=lambda c: c.number)


def canonical_stem(filename: str) -> str:
    """A notebook's file name without the marks of copies: "Copy of 2_Net (1).ipynb" -> "2_net"."""
    stem, previous = Path(filename).stem.strip(), None
    while stem != previous:
        previous = stem
        stem = re.sub(r"^copy of\s+", "", stem, flags=re.IGNORECASE)
        stem = re.sub(r"\s*\(\d+\)$", "", stem)
        stem = re.sub(r"-copy\d*$", "", stem, flags=re.IGNORECASE).strip()
    return stem.lower()


def identify(notebook: Any, filename: str, course: Sequence[CourseNotebook]) -> tuple[CourseNotebook | None, str]:
    """Which course notebook ``notebook`` is, and how that was told: by its course metadata, else by its nbgrader
    cells' grade_ids, else by its check cells' sources (an editor that drops cell metadata), else by its file name
    (or the name Colab keeps in its metadata). (None, "") when it is none of them."""
    number = course_number(notebook)
    for candidate in course:
        if candidate.number == number:
            return candidate, "its course metadata"
    ids = {nbgrader(cell).get("grade_id") for cell in notebook.cells} - {None}
    best = max(course, key=lambda c: len(c.grade_ids & ids), default=None)
    if best is not None and best.grade_ids & ids:
        return best, "its graded cells"
    sources = {cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"}
    best = max(course, key=lambda c: len(c.check_sources & sources), default=None)
    if best is not None and best.check_sources & sources:
        return best, "its check cells"
    names = [filename, str(notebook.metadata.get("colab", {}).get("name", ""))]
    for candidate in course:
        if any(name and canonical_stem(name) == canonical_stem(candidate.name) for name in names):
            return candidate, "its file name"
    return None, ""


def graded_modules(course_dir: Path) -> tuple[str, ...]:
    """The modules with the course's TODOs: the .py files whose solutions the release stubbed, as its manifest
    lists them, else ``GRADED_MODULES``."""
    try:
        stubs = json.loads((course_dir / RELEASE_MANIFEST).read_text(encoding="utf-8"))["stubs"]
        modules = sorted({stub["path"] for stub in stubs if str(stub["path"]).endswith(".py")})
    except (OSError, ValueError, KeyError, TypeError):
        modules = []
    return tuple(modules) or GRADED_MODULES


def release_notebooks(course_dir: Path) -> list[str]:
    """The notebooks the release's manifest lists at the top of the course folder ([] without a manifest)."""
    try:
        files = json.loads((course_dir / RELEASE_MANIFEST).read_text(encoding="utf-8"))["files"]
        return sorted(str(f) for f in files if str(f).endswith(".ipynb") and "/" not in str(f))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def is_stub(source: str) -> bool:
    """Whether a cell still holds the release's placeholder for a solution (``UNWRITTEN_CODE``, or the written
    answer's ``TEXT_STUB``)."""
    return stubs_left(source) > 0 or TEXT_STUB in source


def exercises_done(notebook: Any, course_notebook: CourseNotebook) -> int:
    """How many of the notebook's exercises (code and written answers) no longer hold the release's stub."""
    cells = {nbgrader(cell).get("grade_id"): cell for cell in notebook.cells}
    if set(course_notebook.solutions) & set(cells):
        return sum(1 for grade_id in course_notebook.solutions if grade_id in cells and not is_stub(cells[grade_id].source))
    stubs = sum(is_stub(cell.source) for cell in notebook.cells)  # its cell metadata was dropped: count the stubs left
    return max(0, len(course_notebook.solutions) - stubs)


# ---------------------------------------------------------------------------------------------------------
# Finding the copies of each notebook
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Copy:
    """One copy of a course notebook found somewhere."""

    notebook: Any  # nbformat NotebookNode
    course: CourseNotebook
    where: str  # said to the student: "this page", "Copy of 2_....ipynb in Colab Notebooks", ...
    done: int  # exercises done
    saved: float  # when it was saved (seconds since the epoch)
    is_open: bool = False

    def rank(self) -> tuple[int, bool, float]:
        return self.done, self.is_open, self.saved


def notebook_files(folder: Path, depth: int = 2, names: Iterable[str] | None = None) -> list[Path]:
    """The .ipynb files in ``folder`` and its subfolders down to ``depth`` (data, caches and outputs left out);
    with ``names``, only files whose name, without the marks of copies, is one of theirs."""
    wanted = {canonical_stem(name) for name in names} if names is not None else None
    found: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink() and depth > 0 and entry.name not in SKIPPED_DIRS and not entry.name.startswith("."):
                found += notebook_files(entry, depth - 1, names)
            elif entry.suffix == ".ipynb" and entry.is_file() and (wanted is None or canonical_stem(entry.name) in wanted):
                found.append(entry)
        except OSError:
            continue
    return found


def copies_in_files(paths: Iterable[Path], course: Sequence[CourseNotebook], root: Path | None = None) -> tuple[list[Copy], list[str]]:
    """The course notebooks among ``paths``, and a note for each file that could not be read."""
    copies, notes = [], []
    for path in paths:
        shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
        try:
            notebook = read_notebook(path.read_bytes())
            saved = path.stat().st_mtime
        except (OSError, ValueError) as error:
            notes.append(f"{shown}: skipped, {error}")
            continue
        known, _ = identify(notebook, path.name, course)
        if known is not None:
            copies.append(Copy(notebook, known, shown, exercises_done(notebook, known), saved))
    return copies, notes


def copies_in_archive(archive: Path, course: Sequence[CourseNotebook]) -> list[Copy]:
    """The course notebooks of a previous hand-in (none when it is missing or unreadable)."""
    copies = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if not info.filename.endswith(".ipynb") or "/" in info.filename:
                    continue
                try:
                    notebook = read_notebook(zipped.read(info))
                except ValueError:
                    continue
                known, _ = identify(notebook, info.filename, course)
                if known is not None:
                    saved = datetime.datetime(*info.date_time).timestamp()
                    when = datetime.datetime(*info.date_time).strftime("%d %b %H:%M")
                    copies.append(Copy(notebook, known, f"your hand-in of {when}", exercises_done(notebook, known), saved))
    except (OSError, zipfile.BadZipFile):
        return []
    return copies


def open_colab_notebook(course: Sequence[CourseNotebook], timeout: float = 30) -> tuple[Copy | None, str]:
    """The notebook open in this Colab page, read from the page (google.colab's ``get_ipynb`` request), or
    (None, why not) when it cannot be read or is not a course notebook."""
    try:
        from google.colab import _message  # type: ignore[import-not-found]

        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=timeout)
    except Exception as error:  # the request raises whatever the page's messaging raises
        return None, f"the page did not answer ({type(error).__name__})"
    if not isinstance(reply, dict) or not isinstance(reply.get("ipynb"), dict):
        problem = reply.get("error") if isinstance(reply, dict) else None
        return None, f"the page did not send the notebook{f' ({problem})' if problem else ''}"
    try:
        notebook = read_notebook(json.dumps(reply["ipynb"]))
    except ValueError as error:
        return None, f"the page sent {error}"
    name = str(notebook.metadata.get("colab", {}).get("name", ""))
    known, _ = identify(notebook, name, course)
    if known is None:
        return None, "the notebook in this page is not one of the course's"
    return Copy(notebook, known, "this page", exercises_done(notebook, known), datetime.datetime.now().timestamp(), is_open=True), ""


def choose(copies: Sequence[Copy], course: Sequence[CourseNotebook], open_first: bool = False) -> dict[int, tuple[Copy, list[Copy]]]:
    """For each course notebook, the copy handed in (most exercises done, then the open one, then the newest; with
    ``open_first``, the open one whatever it holds) and the others found."""
    chosen = {}
    for known in course:
        rank = (lambda c: (c.is_open, *c.rank())) if open_first else Copy.rank
        mine = sorted((c for c in copies if c.course.number == known.number), key=rank, reverse=True)
        if mine:
            chosen[known.number] = (mine[0], mine[1:])
    return chosen


# ---------------------------------------------------------------------------------------------------------
# Writing and checking the archive
# ---------------------------------------------------------------------------------------------------------
def notebook_json(copy: Copy) -> str:
    """The notebook as handed in: as found, with its course metadata set (so the grader knows it at once)."""
    notebook = json.loads(json.dumps(copy.notebook))
    notebook.setdefault("metadata", {})[COURSE_KEY] = {"notebook": copy.course.number}
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def write_archive(path: Path, chosen: dict[int, tuple[Copy, list[Copy]]], modules: dict[str, Path], model: Path | None,
                  manifest: dict) -> None:
    """Write the hand-in to ``path`` atomically: a temporary file beside it, read back, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as zipped:
            for copy, _ in chosen.values():
                zipped.writestr(copy.course.name, notebook_json(copy))
            for relative, source in modules.items():
                zipped.write(source, relative)
            if model is not None:
                zipped.write(model, STUDENT_MODEL, compress_type=zipfile.ZIP_STORED)  # weights do not compress
            zipped.writestr(MANIFEST, json.dumps(manifest, indent=1) + "\n")
        with zipfile.ZipFile(temporary) as zipped:
            broken = zipped.testzip()
        if broken is not None:
            raise HandinError(f"{broken} is damaged in the file just written: run this again (is the disk full?)")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        raise HandinError(f"Could not write {path} ({error.strerror or error}): free some space or pass another place to write it") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def check_archive(path: str | os.PathLike, course: Sequence[CourseNotebook], modules: Sequence[str] = GRADED_MODULES) -> list[str]:
    """What keeps a hand-in from being complete, one line each ([] when it holds every course notebook, known by
    its course metadata, and every module, valid Python)."""
    problems = []
    try:
        with zipfile.ZipFile(path) as zipped:
            names = set(zipped.namelist())
            for known in course:
                if known.name not in names:
                    problems.append(f"notebook {known.number} ({known.name}) is missing")
                    continue
                try:
                    notebook = read_notebook(zipped.read(known.name))
                except ValueError as error:
                    problems.append(f"{known.name} is {error}")
                    continue
                if course_number(notebook) != known.number:
                    problems.append(f"{known.name} is not known as notebook {known.number} by its course metadata")
            for relative in modules:
                if relative not in names:
                    problems.append(f"{relative} is missing")
                    continue
                try:
                    compile(zipped.read(relative), relative, "exec")
                except (SyntaxError, ValueError) as error:
                    line = getattr(error, "lineno", None)
                    problems.append(f"{relative} is not valid Python{f' (line {line})' if line else ''}: fix it, or every check that uses it fails")
    except (OSError, zipfile.BadZipFile) as error:
        problems.append(f"{path} is not a readable zip file ({type(error).__name__})")
    return problems


def stubs_left(text: str) -> int:
    """How many solutions a module or cell still leaves to write: the release's placeholders whose
    ``raise NotImplementedError`` is still there (``UNWRITTEN_CODE``)."""
    return len(UNWRITTEN_CODE.findall(text))


# ---------------------------------------------------------------------------------------------------------
# The hand-in
# ---------------------------------------------------------------------------------------------------------
def on_colab() -> bool:
    return "google.colab" in sys.modules


def hand_in(course_dir: str | os.PathLike = REPO_DIR, out: str | os.PathLike | None = None, search: Sequence[str | os.PathLike] = (),
            colab: bool | None = None, this_page: bool = False) -> Path | None:
    """Collect everything graded into one zip file, check it, say what is still to do and what to upload.

    ``course_dir``: the course folder; ``out``: the file to write (default ``handin/facial-keypoints-handin.zip``
    in the course folder); ``search``: more folders to look for copies of the notebooks in; ``colab``: whether
    this runs on Colab (default: detected), where the open notebook is read from the page, Drive's ``Colab
    Notebooks`` is searched and the browser downloads the file; ``this_page``: on Colab, hand in the notebook of
    this page even where another copy has more exercises done. Returns the file written, or None during grading
    (``FKP_GRADING`` set), when there is nothing to hand in. Raises ``HandinError`` (one line) when nothing can be
    handed in.
    """
    if os.environ.get(GRADING_ENV_VAR):
        print("Grading run: no hand-in made.")
        return None
    course_dir = Path(course_dir).resolve()
    colab = on_colab() if colab is None else colab
    course = course_notebooks(course_dir)
    if not course:
        raise HandinError(f"{course_dir} holds no course notebook: run this in the course folder (or pass --course with it)")
    out = Path(out) if out is not None else course_dir / ARCHIVE
    notes: list[str] = []

    copies, unread = copies_in_files(notebook_files(course_dir), course, course_dir)
    notes += unread
    places = [Path(p) for p in search] + ([COLAB_NOTEBOOKS] if colab and COLAB_NOTEBOOKS.is_dir() else [])
    for place in places:
        found, unread = copies_in_files(notebook_files(place, depth=1, names=[c.name for c in course]), course)
        copies += found
        notes += unread
    copies += copies_in_archive(out, course)
    if colab:
        page, problem = open_colab_notebook(course)
        if page is not None:
            copies.append(page)
        else:
            notes.append(f"This notebook could not be read from the page: {problem}. Save it (File > Save a copy in Drive, "
                         "or File > Save if it is in Drive), then run this cell again: the saved copy is taken then.")
    else:
        notes += unsaved_warning(course_dir)
    chosen = choose(copies, course, open_first=this_page)
    for copy, others in chosen.values():
        page = next((o for o in others if o.is_open), None)
        if page is not None:
            notes.append(f"This page ({page.done} of {len(page.course.solutions)} exercises done) is not what is handed in for notebook "
                         f"{page.course.number}: {copy.where} has more done ({copy.done}). To hand in this page all the same, run "
                         "handin.hand_in(this_page=True).")

    wanted = graded_modules(course_dir)
    modules = {relative: course_dir / relative for relative in wanted if (course_dir / relative).is_file()}
    model = course_dir / STUDENT_MODEL
    model = model if model.is_file() else None
    manifest = {
        "made": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "notebooks": {copy.course.name: {"from": copy.where, "exercises_done": copy.done, "exercises": len(copy.course.solutions)}
                      for copy, _ in chosen.values()},
        "modules": {relative: file_sha256(path) for relative, path in modules.items()},
        "model": file_sha256(model) if model else None,
    }
    write_archive(out, chosen, modules, model, manifest)
    problems = check_archive(out, course, wanted)
    lost = [name for name in release_notebooks(course_dir) if name not in {known.name for known in course}]
    problems += [f"{name} is missing" for name in lost]
    notes += [f"{name} is not in the course folder: open your copy of it and run its last cell" for name in lost]
    report(out, course, chosen, wanted, modules, model, problems, notes, colab)
    if colab:
        try:
            from google.colab import files  # type: ignore[import-not-found]

            files.download(str(out))
        except Exception as error:  # the browser may refuse; the file stays in the course folder
            print(f"The download did not start ({type(error).__name__}): find the file in the course folder, "
                  f"{out.relative_to(course_dir) if out.is_relative_to(course_dir) else out}, in Drive.")
    return out


def unsaved_warning(course_dir: Path, older_than: float = 120) -> list[str]:
    """In Jupyter, a reminder when the notebook this kernel runs was last saved a while ago (its file is read
    from disk). Jupyter names it in $JPY_SESSION_NAME."""
    session = os.environ.get("JPY_SESSION_NAME")
    if not session or not session.endswith(".ipynb"):
        return []
    path = Path(session) if Path(session).is_absolute() else course_dir / session
    try:
        age = datetime.datetime.now().timestamp() - path.stat().st_mtime
    except OSError:
        return []
    if age < older_than:
        return []
    return [f"{path.name} was saved {age / 60:.0f} min ago and is read from disk: save it (Ctrl+S) and run this cell "
            "again if you changed it since."]


def report(out: Path, course: Sequence[CourseNotebook], chosen: dict[int, tuple[Copy, list[Copy]]], wanted: Sequence[str], modules: dict[str, Path],
           model: Path | None, problems: list[str], notes: list[str], colab: bool = False) -> None:
    """Print what was handed in, from where, what is still to do, and what to upload."""
    size = out.stat().st_size / 1e6
    print(f"Hand-in written: {out} ({size:.1f} MB)")
    for known in course:
        if known.number not in chosen:
            print(f"  notebook {known.number}  {known.name}: NOT FOUND")
            continue
        copy, others = chosen[known.number]
        skipped = f" (also found, with fewer done or older: {', '.join(o.where for o in others)})" if others else ""
        done = f"{copy.done} of {len(known.solutions)} exercises done" if known.solutions else "its exercises are in the modules below"
        print(f"  notebook {known.number}  {known.name}: from {copy.where}, {done}{skipped}")
    for relative in wanted:
        if relative in modules:
            left = stubs_left(modules[relative].read_text(encoding="utf-8", errors="replace"))
            print(f"  {relative}: {'all TODOs written' if not left else f'{left} TODO(s) not written yet'}")
    print(f"  your model: {STUDENT_MODEL if model else 'none (notebook 2 saves saved_models/student_net.pt)'}")
    todo = problems + notes
    for copy, _ in chosen.values():
        if copy.done < len(copy.course.solutions):
            todo.append(f"notebook {copy.course.number}: {len(copy.course.solutions) - copy.done} exercise(s) still hold the stub "
                        f"(if you did them in another copy, open that one and run its hand-in cell)")
    missing = [known for known in course if known.number not in chosen]
    for known in missing:
        todo.append(f"notebook {known.number} was not found: open your copy of {known.name} and run its last cell")
    if todo:
        print("Still to do:" if not problems else "Not complete yet:")
        for line in dict.fromkeys(todo):
            print(f"  - {line}")
    print(f"Upload {out.name} where your course collects work." + (" Your browser downloads it now." if colab else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--course", default=str(REPO_DIR), help="the course folder (default: the one this file is in)")
    parser.add_argument("--out", help=f"the file to write (default: {ARCHIVE} in the course folder)")
    parser.add_argument("--search", action="append", default=[], metavar="FOLDER",
                        help="another folder to look for copies of the notebooks in (may be repeated)")
    args = parser.parse_args(argv)
    try:
        hand_in(args.course, args.out, args.search, colab=False)
    except HandinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
