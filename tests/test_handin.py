"""Tests for course.handin: one file with everything graded, taken from the best copy of each notebook (on Colab,
the page itself), checked, and never lost to a failed write; and for the notebooks' setup and hand-in cells."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import pytest

import synthetic_course as syn
from course import grade, handin
import course.release

REPO_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-handin")
    source = syn.make_course(root / "course")
    return {"source": source, "release": syn.make_release(source, root / "release")}


def student_folder(tiny: dict, target: Path) -> Path:
    """A student's course folder as the release made it (every exercise still a stub)."""
    shutil.copytree(tiny["release"], target)
    return target


def archive_notebook(archive: Path, name: str) -> nbformat.NotebookNode:
    with zipfile.ZipFile(archive) as zipped:
        return nbformat.reads(zipped.read(name).decode(), as_version=4)


def done(notebook: nbformat.NotebookNode) -> int:
    """How many solution cells of a notebook are no longer stubs."""
    return sum(1 for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution") and not handin.is_stub(c.source))


# ---------------------------------------------------------------------------------------------------------
# What goes in, and from where
# ---------------------------------------------------------------------------------------------------------
def test_the_best_copy_of_each_notebook_goes_in_with_the_modules_and_the_model(tiny, tmp_path, capsys):
    folder = student_folder(tiny, tmp_path / "course")
    (folder / "lesson.py").write_text(syn.LESSON)
    nbformat.write(syn.solve(tiny["source"], folder, syn.NAMES[0]), folder / f"Copy of {syn.NAMES[0]}")  # done, renamed
    (folder / "saved_models").mkdir()
    (folder / "saved_models" / "student_net.pt").write_bytes(b"weights")
    (folder / "scratch.ipynb").write_text(json.dumps(nbformat.v4.new_notebook()))  # not a course notebook
    out = handin.hand_in(folder, colab=False)
    assert out == folder / "handin" / "facial-keypoints-handin.zip"
    with zipfile.ZipFile(out) as zipped:
        assert sorted(zipped.namelist()) == sorted([*syn.NAMES, "lesson.py", handin.STUDENT_MODEL, handin.MANIFEST])
        manifest = json.loads(zipped.read(handin.MANIFEST))
    assert manifest["notebooks"][syn.NAMES[0]] == {"from": f"Copy of {syn.NAMES[0]}", "exercises_done": 2, "exercises": 2}
    assert manifest["notebooks"][syn.NAMES[1]]["exercises_done"] == 0
    assert handin.course_number(archive_notebook(out, syn.NAMES[0])) == 1
    assert handin.check_archive(out, handin.course_notebooks(folder), ["lesson.py"]) == []
    printed = capsys.readouterr().out
    assert f"notebook 1  {syn.NAMES[0]}: from Copy of {syn.NAMES[0]}, 2 of 2 exercises done" in printed
    assert "notebook 2: 1 exercise(s) still hold the stub" in printed
    assert "Upload facial-keypoints-handin.zip where your course collects work." in printed


def test_a_later_hand_in_keeps_what_an_earlier_one_had(tiny, tmp_path, capsys):
    folder = student_folder(tiny, tmp_path / "course")
    solved = syn.solve(tiny["source"], folder, syn.NAMES[0])
    nbformat.write(solved, folder / syn.NAMES[0])
    first = handin.hand_in(folder, colab=False)
    nbformat.write(nbformat.read(tiny["release"] / syn.NAMES[0], as_version=4), folder / syn.NAMES[0])  # answers lost on disk
    second = handin.hand_in(folder, colab=False)
    assert first == second
    assert done(archive_notebook(second, syn.NAMES[0])) == 2
    assert "from your hand-in of" in capsys.readouterr().out


def test_on_colab_the_open_notebook_is_read_from_the_page_and_the_file_downloaded(tiny, tmp_path, monkeypatch, capsys):
    folder = student_folder(tiny, tmp_path / "course")
    colab_notebooks = tmp_path / "Colab Notebooks"
    colab_notebooks.mkdir()
    nbformat.write(syn.solve(tiny["source"], folder, syn.NAMES[0]), colab_notebooks / f"Copy of {syn.NAMES[0]}")
    (colab_notebooks / "Untitled0.ipynb").write_text("{not json")  # other notebooks there are not read
    page = json.loads(nbformat.writes(syn.solve(tiny["source"], folder, syn.NAMES[1])))
    page["metadata"] = {"colab": {"name": f"Copy of {syn.NAMES[1]}"}}  # Colab dropped our metadata: known by its cells
    downloads, requests = [], []

    def blocking_request(kind, request="", timeout_sec=None):
        requests.append(kind)
        return {"ipynb": page}

    fake_colab = types.ModuleType("google.colab")
    fake_colab._message = types.SimpleNamespace(blocking_request=blocking_request)
    fake_colab.files = types.SimpleNamespace(download=downloads.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", fake_colab)
    monkeypatch.setattr(handin, "COLAB_NOTEBOOKS", colab_notebooks)
    out = handin.hand_in(folder)
    assert requests == ["get_ipynb"] and downloads == [str(out)]
    with zipfile.ZipFile(out) as zipped:
        manifest = json.loads(zipped.read(handin.MANIFEST))
    assert manifest["notebooks"][syn.NAMES[1]]["from"] == "this page"
    assert manifest["notebooks"][syn.NAMES[0]]["from"].endswith(f"Colab Notebooks/Copy of {syn.NAMES[0]}")
    assert handin.course_number(archive_notebook(out, syn.NAMES[1])) == 2  # set again in the file handed in
    assert "Your browser downloads it now." in capsys.readouterr().out


def fake_colab_page(monkeypatch, page: dict, colab_notebooks: Path) -> list:
    """google.colab as the hand-in sees it: the page sends ``page``; returns the list of files downloaded."""
    downloads: list = []
    fake_colab = types.ModuleType("google.colab")
    fake_colab._message = types.SimpleNamespace(blocking_request=lambda kind, request="", timeout_sec=None: {"ipynb": page})
    fake_colab.files = types.SimpleNamespace(download=downloads.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", fake_colab)
    monkeypatch.setattr(handin, "COLAB_NOTEBOOKS", colab_notebooks)
    return downloads


def test_a_page_with_less_done_than_a_saved_copy_is_handed_in_only_when_asked(tiny, tmp_path, monkeypatch, capsys):
    folder = student_folder(tiny, tmp_path / "course")
    colab_notebooks = tmp_path / "Colab Notebooks"
    colab_notebooks.mkdir()
    nbformat.write(syn.solve(tiny["source"], folder, syn.NAMES[0]), colab_notebooks / f"Copy of {syn.NAMES[0]}")
    page = json.loads(nbformat.writes(nbformat.read(folder / syn.NAMES[0], as_version=4)))  # opened again from the badge
    fake_colab_page(monkeypatch, page, colab_notebooks)
    out = handin.hand_in(folder)
    assert done(archive_notebook(out, syn.NAMES[0])) == 2
    assert ("This page (0 of 2 exercises done) is not what is handed in for notebook 1: " in capsys.readouterr().out)
    handin.hand_in(folder, this_page=True)
    assert done(archive_notebook(out, syn.NAMES[0])) == 0


def test_on_colab_a_page_that_does_not_answer_is_said_with_what_to_do(tiny, tmp_path, monkeypatch, capsys):
    folder = student_folder(tiny, tmp_path / "course")

    def blocking_request(kind, request="", timeout_sec=None):
        raise TimeoutError("no reply")

    fake_colab = types.ModuleType("google.colab")
    fake_colab._message = types.SimpleNamespace(blocking_request=blocking_request)
    fake_colab.files = types.SimpleNamespace(download=lambda path: None)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", fake_colab)
    monkeypatch.setattr(handin, "COLAB_NOTEBOOKS", tmp_path / "nowhere")
    out = handin.hand_in(folder)
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "This notebook could not be read from the page: the page did not answer (TimeoutError)" in printed
    assert "File > Save a copy in Drive" in printed


def test_what_is_missing_or_broken_is_listed(tiny, tmp_path, capsys):
    folder = student_folder(tiny, tmp_path / "course")
    (folder / syn.NAMES[1]).unlink()
    (folder / "lesson.py").write_text("def double(x):\n    return 2 *\n")
    out = handin.hand_in(folder, colab=False)
    problems = handin.check_archive(out, handin.course_notebooks(tiny["release"]), ["lesson.py"])
    assert problems == [f"notebook 2 ({syn.NAMES[1]}) is missing", "lesson.py is not valid Python (line 2): fix it, or every check that uses it fails"]
    printed = capsys.readouterr().out
    assert "Not complete yet:" in printed and f"{syn.NAMES[1]} is missing" in printed and "lesson.py is not valid Python (line 2)" in printed
    assert f"{syn.NAMES[1]} is not in the course folder: open your copy of it and run its last cell" in printed


def test_a_failed_write_keeps_the_previous_hand_in(tiny, tmp_path, monkeypatch):
    folder = student_folder(tiny, tmp_path / "course")
    out = handin.hand_in(folder, colab=False)
    before = out.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full_disk)
    with pytest.raises(handin.HandinError, match="Could not write .* \\(No space left on device\\)"):
        handin.hand_in(folder, colab=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "no temporary file is left"


def test_nothing_is_handed_in_while_grading(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(handin.GRADING_ENV_VAR, "1")
    folder = student_folder(tiny, tmp_path / "course")
    assert handin.hand_in(folder, colab=False) is None
    assert not (folder / "handin").exists() and capsys.readouterr().out == "Grading run: no hand-in made.\n"


def test_the_command_line_fails_in_one_line_outside_a_course(tmp_path):
    done = subprocess.run([sys.executable, "-m", "course.handin", "--course", str(tmp_path)], cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "holds no course notebook" in done.stderr


@pytest.mark.parametrize("name, stem", [("Copy of 2_Define_Train_Network.ipynb", "2_define_train_network"),
                                        ("Copy of Copy of 1_Load_and_Visualize (1).ipynb", "1_load_and_visualize"),
                                        ("4_Fun_with_Keypoints-Copy1.ipynb", "4_fun_with_keypoints"),
                                        ("notes.ipynb", "notes")])
def test_names_of_copies(name, stem):
    assert handin.canonical_stem(name) == stem


# ---------------------------------------------------------------------------------------------------------
# One list, one source
# ---------------------------------------------------------------------------------------------------------
def test_the_modules_handed_in_are_the_ones_with_solutions():
    assert sorted(handin.GRADED_MODULES) == sorted(grade.graded_modules(REPO_DIR)), (
        "course/handin.py's GRADED_MODULES must list every .py file with solution markers")


def test_a_solution_written_below_the_kept_placeholder_comment_counts_as_written():
    # a student who writes the code below "# YOUR CODE HERE" and deletes only the raise has written it; the hand-in once
    # said "data_load.py: 6 TODO(s) not written yet" of a finished notebook 1 that kept the comments
    module = 'def twice(x):\n    """Twice x."""\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n'
    released, _ = course.release.release_python(module, "lesson.py")
    assert handin.stubs_left(released) == 1 and handin.is_stub(released)
    written = released.replace(released.splitlines()[-1], "    return 2 * x")
    assert handin.CODE_STUB in written and handin.stubs_left(written) == 0 and not handin.is_stub(written)


def test_the_release_writes_what_the_hand_in_reads(tiny):
    assert (handin.CODE_STUB, handin.TEXT_STUB, handin.RELEASE_MANIFEST) == (course.release.CODE_STUB, course.release.TEXT_STUB,
                                                                              course.release.MANIFEST)
    assert handin.graded_modules(tiny["release"]) == ("lesson.py",)
    assert handin.graded_modules(tiny["source"]) == handin.GRADED_MODULES  # no manifest: the list in the module


# ---------------------------------------------------------------------------------------------------------
# The notebooks: known by their metadata, data on Colab's disk, a hand-in at the end
# ---------------------------------------------------------------------------------------------------------
NOTEBOOKS = sorted(REPO_DIR.glob("*.ipynb"))


def test_every_course_notebook_is_known_by_its_metadata_and_ends_with_the_hand_in():
    known = handin.course_notebooks(REPO_DIR)
    assert [n.name for n in known] == [p.name for p in NOTEBOOKS] and [n.number for n in known] == list(range(1, len(NOTEBOOKS) + 1))
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert cells[-2].source.startswith("## Hand in") and "Upload that file" in cells[-2].source, path.name
        assert cells[-1].source.endswith("from course import handin\nhandin.hand_in()"), path.name


def test_the_setup_keeps_data_on_colabs_disk_and_says_how_to_hand_in():
    for path in NOTEBOOKS:
        prose, setup = (cell.source for cell in nbformat.read(path, as_version=4).cells[1:3])
        colab = setup.split("if IS_COLAB:", 1)[1].split("%matplotlib", 1)[0]
        assert 'ensure_dataset(Path("/content/data"), archive_cache=REPO / "downloads" / download.ARCHIVE_NAME)' in colab, path.name
        assert '"/content/data", "/content/cache"' in colab and 'os.environ["FKP_CACHE"]' in colab, path.name
        assert "keep your answers with *File > Save a copy in Drive*" not in prose, path.name
        assert "the last cell of every notebook hands in" in prose and "upload the file" in prose, path.name


def test_the_release_keeps_the_course_metadata_and_the_hand_in(tmp_path):
    out = tmp_path / "release"
    report = course.release.make_release(out)
    assert "course/handin.py" in report.files and "docs/handin.md" in report.files and "docs/grading.md" not in report.files
    assert [(n.number, n.name) for n in handin.course_notebooks(out)] == [(n.number, n.name) for n in handin.course_notebooks(REPO_DIR)]
    assert handin.graded_modules(out) == tuple(sorted(handin.GRADED_MODULES))
    text = (out / "docs" / "handin.md").read_text()
    assert "facial-keypoints-handin.zip" in text and not re.search(r"course[./]grade", text)
