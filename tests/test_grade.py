"""Tests for course.grade: what students hand in (zip files, folders, renamed notebooks) is found and graded, every
entry gets a row and feedback, each check cell scores on its own, and a hanging, crashing or endless submission
cannot stop the others.

Two grading runs are shared by the tests: one of a tiny course of the same layout (``synthetic_course``: its
notebooks run in seconds, so hangs, crashes and partial credit are cheap to grade), and one of the real course (a
Colab-style submission with every solution, and the bare release handed in as a zip file), the expensive part.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import synthetic_course as syn
from course import grade, handin
import course.release

REPO_DIR = Path(__file__).resolve().parents[1]
COLAB_NOTEBOOKS = "Colab Notebooks"


def read_table(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def outcomes(details: Path, student: str) -> dict[str, str]:
    with details.open(newline="") as f:
        return {row["check"]: row["outcome"] for row in csv.DictReader(f) if row["student"] == student}


def run_grader(submissions: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course.grade", str(submissions), "--out", str(out), *options], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=1500)


# ---------------------------------------------------------------------------------------------------------
# The tiny course: every kind of submission, graded once
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    source = syn.make_course(root / "course")
    release = syn.make_release(source, root / "release")
    subs = root / "submissions"
    subs.mkdir()
    # The hand-in file of a student who did everything, made by the hand-in command of the release.
    solved = syn.solved_copy(source, release, root / "solved")
    made = subprocess.run([sys.executable, "-m", "course.handin", "--course", str(solved), "--out", str(subs / "zipped.zip")],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    # Colab without the hand-in: the course folder as cloned, the answers in "Copy of" notebooks beside it and in
    # "Colab Notebooks", one of them saved by an editor that keeps no metadata.
    colab = subs / "colab"
    shutil.copytree(release, colab)
    shutil.copy2(source / "lesson.py", colab / "lesson.py")
    nbformat.write(syn.solve(source, release, syn.NAMES[0]), colab / f"Copy of {syn.NAMES[0]}")
    (colab / COLAB_NOTEBOOKS).mkdir()
    nbformat.write(syn.solve(source, release, syn.NAMES[1]), colab / COLAB_NOTEBOOKS / f"Copy of {syn.NAMES[1]}")
    syn.strip_metadata(colab / COLAB_NOTEBOOKS / f"Copy of {syn.NAMES[1]}")
    # One part of the module wrong (partial credit), and a model file that is not a model.
    partial = syn.solved_copy(source, release, subs / "partial")
    (partial / "lesson.py").write_text(syn.LESSON.replace("return x / 2", "return x / 3"))
    (partial / "saved_models").mkdir()
    (partial / "saved_models" / "student_net.pt").write_bytes(b"not a model")
    # A cell that sleeps (stopped by the interrupt: the notebook goes on) and one that ignores the interrupt.
    hang = syn.solved_copy(source, release, subs / "hang")
    syn.insert_cell(hang, syn.NAMES[0], 2, "import time\ntime.sleep(600)")
    syn.insert_cell(hang, syn.NAMES[1], 2, "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass")
    # A crash: the kernel dies in notebook 1; notebook 2 still runs.
    crash = syn.solved_copy(source, release, subs / "crash")
    syn.insert_cell(crash, syn.NAMES[0], 3, "import os\nos._exit(1)")
    # What cannot be graded: a file that is not a zip archive, a folder without the course, a stray file.
    (subs / "broken.zip").write_bytes(b"this is not a zip file")
    (subs / "empty").mkdir()
    (subs / "empty" / "notes.txt").write_text("nothing here")
    (subs / "essay.pdf").write_bytes(b"%PDF-1.4")
    shutil.copytree(release, subs / "bare")
    out = root / "out" / "grades.csv"
    done = run_grader(subs, out, "--course", str(source), "--cell-timeout", "5", "--timeout", "120")
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "details": out.with_name("grades.details.csv"), "feedback": out.parent / "feedback", "stdout": done.stdout,
            "table": read_table(out), "course": grade.load_course(source), "source": source, "release": release}


def test_every_entry_gets_a_row_and_the_ones_not_graded_say_why(tiny):
    table = tiny["table"]
    assert set(table) == {"(maximum)", "zipped", "colab", "partial", "hang", "crash", "broken", "empty", "essay", "bare"}
    assert table["broken"]["status"].startswith("not graded: broken.zip is not a readable zip archive")
    assert table["empty"]["status"].startswith("not graded: no course notebook or module in empty")
    assert table["essay"]["status"] == "not graded: essay.pdf is not a folder, a zip file or a notebook"
    for student in ("broken", "empty", "essay"):
        assert table[student]["auto"] == "0"
        assert f"{student}: not graded: " in tiny["stdout"]
        assert "Not graded" in (tiny["feedback"] / student / "report.md").read_text()
    assert "(9 submissions, 5 checks, 1 written answer to grade by hand" in tiny["stdout"]


def test_a_hand_in_file_and_a_colab_folder_of_a_complete_solution_score_full_marks(tiny):
    table = tiny["table"]
    assert table["(maximum)"]["auto"] == "7" and table["(maximum)"]["total"] == "8"
    for student in ("zipped", "colab"):
        assert table[student]["auto"] == "7" and table[student]["status"] == "graded", table[student]
        assert all(outcome == "pass" for outcome in outcomes(tiny["details"], student).values() if outcome != "written answer: grade by hand")
    notes = table["colab"]["notes"]
    assert f"notebook 1: took Copy of {syn.NAMES[0]} over {syn.NAMES[0]} (0)" in notes
    assert f"took {COLAB_NOTEBOOKS}/Copy of {syn.NAMES[1]}" in notes  # known by its check cells: its metadata was dropped
    report = (tiny["feedback"] / "colab" / "report.md").read_text()
    assert "**Checks: 7 of 7 points.**" in report and "Twice two." in report


def test_each_check_cell_scores_on_its_own(tiny):
    table = tiny["table"]
    assert (table["partial"]["check-double"], table["partial"]["check-half"], table["partial"]["auto"]) == ("2", "0", "5")
    assert outcomes(tiny["details"], "partial")["check-half"] == "fail: AssertionError: half(4) should be 2"
    assert "model: not measured: ModuleNotFoundError" in table["partial"]["notes"] and table["partial"]["test_nme_io"] == ""


def test_a_hanging_cell_is_interrupted_and_a_stuck_kernel_stops_only_its_notebook(tiny):
    table, found = tiny["table"], outcomes(tiny["details"], "hang")
    assert table["hang"]["auto"] == "5"  # notebook 1 went on after the interrupt; notebook 2 stopped
    assert {found[c] for c in ("check-value", "check-double", "check-half")} == {"pass"}
    stuck = "not run: cell 3 (`while True:`) ran past the time limit of 5 s and the kernel did not stop when interrupted"
    assert found["check-name"] == found["check-after"] == stuck
    report = (tiny["feedback"] / "hang" / "report.md").read_text()
    assert f"- {syn.NAMES[0]}: ran to the end in" in report and "interrupted at the time limit: cell 3 (`time.sleep(600)`)" in report
    assert f"{syn.NAMES[0]}: interrupted at the time limit: cell 3 (`time.sleep(600)`)" in table["hang"]["notes"]
    executed = nbformat.read(tiny["feedback"] / "hang" / syn.NAMES[0], as_version=4)
    assert any(o.get("ename") == grade.TIMEOUT_ENAME for o in executed.cells[2].outputs)


def test_a_crash_says_where_the_kernel_died_and_the_next_notebook_runs(tiny):
    found = outcomes(tiny["details"], "crash")
    died = "not run: the kernel died in cell 4 (`os._exit(1)`)"
    assert all(found[c].startswith(died) for c in ("check-value", "check-double", "check-half"))
    assert found["check-name"] == found["check-after"] == "pass"
    assert tiny["table"]["crash"]["auto"] == "2"


def test_the_bare_release_scores_nothing_and_its_errors_say_why(tiny):
    found = outcomes(tiny["details"], "bare")
    assert tiny["table"]["bare"]["auto"] == "0"
    assert found["check-value"] == "fail: NameError: name 'value' is not defined"
    assert found["check-double"].startswith("fail: NotImplementedError: double in lesson.py is not written yet")
    assert found["answer-why"] == "no answer"


def test_feedback_keeps_the_executed_notebooks_and_a_report(tiny):
    folder = tiny["feedback"] / "zipped"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*syn.NAMES, *(Path(n).with_suffix(".html").name for n in syn.NAMES),
                                                               "report.md", "run.log"])
    executed = nbformat.read(folder / syn.NAMES[0], as_version=4)
    assert all(c.execution_count is not None for c in executed.cells if c.cell_type == "code")
    report = (folder / "report.md").read_text()
    assert "| 1 | check-half | 2 / 2 | pass |" in report and "### answer-why (notebook 1, 1 point)" in report
    assert "(in the zip file)" in report


def test_written_answers_get_columns_to_fill_in_and_totals_follow(tiny, tmp_path):
    table = shutil.copy2(tiny["out"], tmp_path / "grades.csv")
    assert tiny["table"]["(maximum)"]["answer-why"] == "1" and tiny["table"]["zipped"]["answer-why"] == ""
    rows = list(csv.reader(open(table, newline="")))
    column = rows[0].index("answer-why")
    for row in rows[2:]:
        row[column] = "1" if row[0] == "zipped" else ""
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    done = subprocess.run([sys.executable, "-m", "course.grade", "--totals", str(table), "--course", str(tiny["source"])],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert read_table(table)["zipped"]["total"] == "8" and read_table(table)["colab"]["total"] == "7"
    rows[2][column] = "3"  # more than the answer's 1 point
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    done = subprocess.run([sys.executable, "-m", "course.grade", "--totals", str(table), "--course", str(tiny["source"])],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "answer-why: 3 is outside 0 to 1 points" in done.stderr


def test_grading_again_keeps_the_points_filled_in(tiny, tmp_path):
    course = tiny["course"]
    out = tmp_path / "grades.csv"
    graded = grade.Graded("ann", tmp_path, outcomes={c.grade_id: "pass" for c in course.checks})
    grade.write_tables([graded], course, out)
    rows = list(csv.reader(open(out, newline="")))
    rows[2][rows[0].index("answer-why")] = "0.5"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    grade.write_tables([graded], course, out)
    assert read_table(out)["ann"]["answer-why"] == "0.5" and read_table(out)["ann"]["total"] == "7.5"


def test_a_submission_past_its_time_limit_is_stopped_with_its_kernel(tiny, tmp_path):
    course, source, release = tiny["course"], tiny["source"], tiny["release"]
    student = syn.solved_copy(source, release, tmp_path / "endless")
    pid_file = tmp_path / "kernel.pid"
    syn.insert_cell(student, syn.NAMES[1], 1, f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))")
    syn.insert_cell(student, syn.NAMES[1], 2, "import time\ntime.sleep(600)")
    settings = grade.Settings(timeout=25, cell_timeout=600, env=grade.grading_env(full=False, data=None))
    graded = grade.grade_one(student, "endless", course, release, settings, tmp_path / "feedback")
    assert graded.outcomes["check-value"] == "pass"  # notebook 1 finished before the limit
    assert graded.outcomes["check-name"] == graded.outcomes["check-after"] == (
        f"not run: the submission ran past its time limit of 25 s, in cell 3 (`time.sleep(600)`) of {syn.NAMES[1]}")
    assert "stopped" in (tmp_path / "feedback" / "endless" / "report.md").read_text()
    assert not alive(int(pid_file.read_text())), "the kernel of the stopped submission is still running"


def alive(pid: int, wait: float = 5.0) -> bool:
    """Whether process ``pid`` still runs after ``wait`` seconds (a zombie, killed but not yet reaped, does not)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z" or time.monotonic() > deadline:
            return state != "Z"
        time.sleep(0.2)


def test_edited_checks_are_restored_and_deleted_ones_score_zero(tiny, tmp_path):
    course, source, release = tiny["course"], tiny["source"], tiny["release"]
    student = syn.solved_copy(source, release, tmp_path / "student")
    notebook = nbformat.read(student / syn.NAMES[0], as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "check-value":
            cell.source = "pass  # edited by the student"
    notebook.cells = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "check-half"]
    nbformat.write(notebook, student / syn.NAMES[0])
    found = grade.find_submission(student, tmp_path / "scratch", course)
    missing, answers, _ = grade.prepare_copy(found, release, tmp_path / "work", course)
    sources = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nbformat.read(tmp_path / "work" / syn.NAMES[0], as_version=4).cells}
    assert sources["check-value"] == 'assert value == 3, "value should be 3"'
    assert missing == {"check-half": "missing: the check cell was deleted"}
    assert answers == {"answer-why": "**Answer:**\n\n### BEGIN SOLUTION\nTwice two.\n### END SOLUTION"}


def test_a_zip_file_gives_up_only_what_grading_needs(tiny, tmp_path):
    archive = tmp_path / "sneaky.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../escaped.py", "x = 1")
        zipped.writestr("course/data/training/face.png", b"png")
        zipped.writestr("__MACOSX/course/._lesson.py", b"")
        zipped.writestr("course/lesson.py", syn.LESSON)
        zipped.writestr("course/notes.docx", b"doc")
    unpacked = grade.unpack_zip(archive, tmp_path / "unpacked")
    assert sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file()) == ["course/lesson.py"]
    assert not (tmp_path / "escaped.py").exists()
    found = grade.find_submission(archive, tmp_path / "scratch", tiny["course"])
    assert set(found.modules) == {"lesson.py"} and not found.notebooks


def test_a_failing_check_is_told_by_its_message_else_by_the_line_that_raised():
    bare_assert = {"output_type": "error", "ename": "AssertionError", "evalue": "",
                   "traceback": ["\x1b[0;31mAssertionError\x1b[0m  Traceback (most recent call last)",
                                 "Cell \x1b[0;32mIn[7], line 2\x1b[0m\n\x1b[1;32m      1\x1b[0m x = 1\n\x1b[0;32m----> 2\x1b[0m \x1b[38;5;28;01massert\x1b[39;00m value \x1b[38;5;241m==\x1b[39m \x1b[38;5;241m3\x1b[39m\n",
                                 "\x1b[0;31mAssertionError\x1b[0m: "]}
    assert grade.cell_outcome({"outputs": [bare_assert], "execution_count": 7}) == "fail: AssertionError: assert value == 3"
    told = {**bare_assert, "evalue": "value should be 3\nmore detail"}
    assert grade.cell_outcome({"outputs": [told], "execution_count": 7}) == "fail: AssertionError: value should be 3"
    assert grade.cell_outcome({"outputs": [], "execution_count": 3}) == "pass"
    assert grade.cell_outcome({"outputs": [], "execution_count": None}) == "not run"


def test_the_course_cache_is_linked_into_each_copy_and_never_written_through(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "crops_training_112_abc.npz").write_bytes(b"crops")
    (cache / "crops_training_112_abc.npz.tmp.npz").write_bytes(b"half written")
    grade.link_cache(cache, tmp_path / "copy" / ".cache")
    linked = tmp_path / "copy" / ".cache" / "crops_training_112_abc.npz"
    assert sorted(p.name for p in linked.parent.iterdir()) == [linked.name]
    assert linked.stat().st_ino == (cache / linked.name).stat().st_ino
    replacement = linked.with_name("new.tmp")
    replacement.write_bytes(b"rebuilt")
    os.replace(replacement, linked)  # how the notebooks write a cache file: a new file renamed over the old one
    assert (cache / linked.name).read_bytes() == b"crops"


def test_the_command_says_in_one_line_what_is_wrong(tmp_path, capsys, monkeypatch):
    assert grade.main([str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert grade.main([str(tmp_path)]) == 1
    assert "is empty" in capsys.readouterr().err
    (tmp_path / "student").mkdir()
    monkeypatch.delenv("FKP_DATA", raising=False)
    assert grade.main([str(tmp_path), "--out", str(tmp_path / "grades.csv")]) == 1
    assert capsys.readouterr().err == "error: the dataset is needed: set FKP_DATA or pass --data with the dataset folder (submissions leave data/ out)\n"
    assert not (tmp_path / "grades.csv").exists()
    assert grade.main([str(tmp_path), "--course", str(tmp_path / "student")]) == 1
    assert "has no course notebook" in capsys.readouterr().err


def test_defaults_fit_a_class_on_a_small_machine():
    args = grade.build_parser().parse_args(["submissions"])
    assert args.cell_timeout <= 120, "a hanging cell must be stopped within 2 minutes"
    assert args.timeout <= 900 and args.model_timeout <= 300
    assert args.jobs == min(2, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------------
# The real course
# ---------------------------------------------------------------------------------------------------------
def paste_solutions(release: Path, target: Path, rename=lambda name: name) -> None:
    """A copy of the release with the instructors' solutions pasted in: the modules, and each solution cell, the
    notebooks saved under ``rename(name)``."""
    shutil.copytree(release, target)
    for module in grade.graded_modules(REPO_DIR):
        shutil.copy2(REPO_DIR / module, target / module)
    for known in handin.course_notebooks(REPO_DIR):
        nbformat.write(syn.solve(REPO_DIR, target, known.name), target / rename(known.name))


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("grading")
    release = root / "release"
    course.release.make_release(release, repo_url="https://github.com/acme/keypoints-course")
    submissions = root / "submissions"
    submissions.mkdir()
    # On Colab without the hand-in: the course folder with the released notebooks, and the answers in "Copy of ...".
    paste_solutions(release, submissions / "colab-alice", rename=lambda name: f"Copy of {name}")
    shutil.copy2(REPO_DIR / "saved_models" / "keypoints_course.pt", submissions / "colab-alice" / handin.STUDENT_MODEL)
    # The bare release, handed in with the release's own hand-in command.
    made = subprocess.run([sys.executable, "-m", "course.handin", "--out", str(submissions / "bare-bob.zip")], cwd=release,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    out = root / "grades.csv"
    done = run_grader(submissions, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "table": read_table(out), "course": grade.load_course(REPO_DIR), "feedback": root / "feedback",
            "details": out.with_name("grades.details.csv"), "handin_stdout": made.stdout}


def test_a_colab_submission_of_the_solutions_earns_every_point_and_its_model_is_measured(graded_course):
    table, course = graded_course["table"], graded_course["course"]
    assert table["colab-alice"]["auto"] == table["(maximum)"]["auto"] == f"{course.max_auto:g}", table["colab-alice"]
    for check in course.checks:
        assert table["colab-alice"][check.grade_id] == f"{check.points:g}", check.grade_id
    assert 0 < float(table["colab-alice"]["test_nme_io"]) < 0.1
    assert table["(maximum)"]["total"] == f"{course.max_auto + sum(a.points for a in course.answers):g}"
    assert [a.grade_id for a in course.answers] == [key for key in table["(maximum)"] if key.startswith("answer-")]
    report = (graded_course["feedback"] / "colab-alice" / "report.md").read_text()
    assert "test NME_io" in report and "Model answer, for graders" in report  # the pasted answers, gathered
    assert sorted(p.name for p in (graded_course["feedback"] / "colab-alice").glob("*.ipynb")) == sorted(n.name for n in course.notebooks)


def test_the_bare_release_handed_in_earns_nothing_for_its_unsolved_checks(graded_course):
    table, course = graded_course["table"], graded_course["course"]
    found = outcomes(graded_course["details"], "bare-bob")
    assert table["bare-bob"]["auto"] == "0" and table["bare-bob"]["test_nme_io"] == ""
    for check in course.checks:
        assert found[check.grade_id].startswith("fail: AssertionError"), (check.grade_id, found[check.grade_id])
        assert "TODO" in found[check.grade_id] or "not defined yet" in found[check.grade_id], found[check.grade_id]
    assert all(found[a.grade_id] == "no answer" for a in course.answers)
    assert "exercise(s) still hold the stub" in graded_course["handin_stdout"]


def test_a_kernel_that_stops_before_the_first_cell_is_started_again(tmp_path, monkeypatch):
    """The reported case: in a grading run, the kernel of a solved notebook died before it answered ("Kernel died
    before replying to kernel_info"), and the student's checks scored 0. A failed start says nothing of the work."""
    import json

    import nbclient

    work = tmp_path / "work"
    (work / grade.GRADE_DIR).mkdir(parents=True)
    check = nbformat.v4.new_code_cell("assert x == 1", metadata={"nbgrader": {"grade_id": "check-x", "grade": True, "points": 1}})
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), check]), work / "one.ipynb")
    (work / grade.GRADE_DIR / "plan.json").write_text(json.dumps({"notebooks": ["one.ipynb"], "checks": ["check-x"], "cell_timeout": 60}))
    real, starts = nbclient.NotebookClient.execute, []

    def failing_starts(failures: int):
        def execute(self, **kwargs):
            starts.append(None)
            if len(starts) <= failures:
                raise RuntimeError("Kernel died before replying to kernel_info")
            return real(self, **kwargs)
        return execute

    monkeypatch.setattr(nbclient.NotebookClient, "execute", failing_starts(1))
    grade.run_notebooks(work)
    results = json.loads((work / grade.GRADE_DIR / "results.json").read_text())
    assert len(starts) == 2 and results["checks"] == {"check-x": "pass"} and results["notebooks"]["one.ipynb"]["status"] == "complete"

    starts.clear()
    monkeypatch.setattr(nbclient.NotebookClient, "execute", failing_starts(grade.KERNEL_START_TRIES))
    grade.run_notebooks(work)
    results = json.loads((work / grade.GRADE_DIR / "results.json").read_text())
    run = results["notebooks"]["one.ipynb"]
    assert len(starts) == grade.KERNEL_START_TRIES and run["status"] == "stopped"
    assert run["reason"].startswith("the kernel did not start") and "grade this submission again" in run["reason"]
    assert results["checks"]["check-x"].startswith("not run: the kernel did not start")
