"""Tests for course.release: the student release keeps no solution, its checks fail on the stubs with a helpful
message, and the same checks pass on the solutions.

The release is built once into a temporary folder. Its code runs in a subprocess started in that folder (the
stubbed modules have the same names as the solution modules this process has imported), and the same probe runs
on the source for comparison. No notebook is executed here: the check helpers and the check cells that need no
notebook state run directly; nbval runs the source notebooks, solutions included, in the main test command.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import course.release
from course.release import MARKER, ReleaseError

REPO_DIR = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in REPO_DIR.glob("*.ipynb"))
# What the students write in the modules, as the stubs name it.
MODULE_STUBS = {
    "Rescale.__call__ in data_load.py", "RandomCrop.__call__ in data_load.py", "CenterCrop.__call__ in data_load.py",
    "Normalize.__call__ in data_load.py", "train_transform in data_load.py", "test_transform in data_load.py",
    "Net.__init__ in models.py", "Net.forward in models.py", "Artwork.target_points in filters.py", "placement_transform in filters.py",
}
# The notebook that asks for each module's TODOs, as the TODO comments name it.
MODULE_NOTEBOOKS = {"data_load.py": "notebook 1", "models.py": "notebook 2", "filters.py": "notebook 4"}
# Check cells of module TODOs: they need no notebook state, so they run here on both versions.
MODULE_CHECK_CELLS = {"check-rescale": "data_load.py", "check-random-crop": "data_load.py", "check-center-crop": "data_load.py",
                      "check-normalize": "data_load.py", "check-transforms": "data_load.py", "check-net": "models.py",
                      "check-placement": "filters.py"}
CHECK_HELPERS = {"check_rescale": "data_load.py", "check_random_crop": "data_load.py", "check_center_crop": "data_load.py",
                 "check_normalize": "data_load.py", "check_transforms": "data_load.py", "check_net": "models.py",
                 "check_placement": "filters.py"}
# What only instructors have: left out of the release, and named by no released file.
LEFT_OUT = ("course/release.py", "course/grade.py", "course/expected.py", "conftest.py", "pytest.ini", "requirements-test.txt",
            "setup.cfg", "requirements-dev.txt", "benchmarks/mutation.sh", "docs/instructors.md", "docs/grading.md",
            "benchmarks/grading_time.py", "pipeline/trainer.py", "train.py", "benchmarks/epoch_time.py",
            "pipeline/detector_training.py", "pipeline/refinement.py", "pipeline/face_score_refit.py")

# Run in the course folder (source or release): calls the stubbed code, the check helpers and every check cell,
# and prints each outcome as [exception type or "pass", message].
PROBE = r'''
import glob, json, sys
sys.path.insert(0, ".")
import numpy as np, torch, nbformat
torch.set_num_threads(1)
import data_load, filters, models
from course import checks, notebook_helpers
from pipeline import detect_cli, evaluation, explain, keypoint_pipeline, training
from resources import artwork

def outcome(function):
    try:
        function()
        return ["pass", ""]
    except BaseException as error:
        return [type(error).__name__, str(error)]

sample = checks.stored_sample("sample")
window = checks.stored_sample("window")
face = artwork.face_keypoints((200, 180), 220, 0)
calls = {
    "Rescale": lambda: data_load.Rescale(50)(sample),
    "RandomCrop": lambda: data_load.RandomCrop(50)(sample),
    "CenterCrop": lambda: data_load.CenterCrop(50)(sample),
    "Normalize": lambda: data_load.Normalize()(sample),
    "train_transform": lambda: data_load.train_transform(112),
    "test_transform": lambda: data_load.test_transform(112),
    "Net.__init__": lambda: models.Net(),
    "Net.forward": lambda: models.Net.forward(None, torch.zeros(1)),
    "Artwork.target_points": lambda: filters.load_artwork("sunglasses").target_points(face),
    "placement_transform": lambda: filters.placement_transform("sunglasses", face),
}
import cv2, time
from pathlib import Path
from pipeline import inference
from detector_architectures import THOROUGH_PARAMS, HaarFaceDetector
from pipeline.keypoint_pipeline import KeypointPipeline
namespace = dict(checks=checks, data_load=data_load, models=models, training=training, filters=filters, evaluation=evaluation, np=np,
                 torch=torch, nn=torch.nn, cv2=cv2, time=time, Path=Path, sample=sample, INPUT_SIZE=112, EPOCHS=2, inference=inference,
                 KeypointPipeline=KeypointPipeline)
# What the notebooks' TODO cells and check cells use from the cells above them: notebook 2's network, a validation
# set of drawn face windows and its training functions; notebook 3's astronaut and her detected face; notebook 4's
# keypoints.
try:
    namespace["net"] = models.build_model("net")
except NotImplementedError:
    pass
try:
    test_transform = data_load.test_transform(112)
except NotImplementedError:
    test_transform = None
namespace["val_set"] = data_load.FaceWindows({"images": np.stack([window["image"]] * 4), "keypoints": np.stack([window["keypoints"]] * 4),
                                              "names": np.array(["Check_Face_00.jpg"] * 4)}, transform=test_transform)
photo = detect_cli.astronaut()
namespace.update(photo=photo, detections={"astronaut": HaarFaceDetector(**THOROUGH_PARAMS).detect(photo)})
pipe = KeypointPipeline.from_pretrained(threads=1)
namespace.update(pipe=pipe, keypoints=pipe.detect(photo)[0].keypoints)
faces = [data_load.FaceCrop(224)(checks._face_sample(roll_deg=roll)) for roll in (-8, 0, 8, 16)]
namespace["gray"] = cv2.cvtColor(faces[1]["image"], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
cells, after_todo = {}, {}
for path in sorted(glob.glob("*.ipynb")):
    notebook = nbformat.read(path, as_version=4).cells
    for cell in notebook:  # the notebook's own training functions (stubs in the release), for the checks that use them
        if cell.metadata.get("nbgrader", {}).get("grade_id") in ("train-one-epoch", "validate"):
            exec(cell.source, namespace)
    for index, cell in enumerate(notebook):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            bare = {key: value for key, value in namespace.items() if key not in ("train_one_epoch", "validate")}
            cells[meta["grade_id"]] = outcome(lambda: exec(cell.source, dict(bare)))
            todo = notebook[index - 1]
            if todo.cell_type == "code" and todo.metadata.get("nbgrader", {}).get("solution"):
                # the notebook's own TODO cell, then its check, in one namespace (no other notebook state)
                state = dict(namespace)
                after_todo[meta["grade_id"]] = [outcome(lambda: exec(todo.source, state)), outcome(lambda: exec(cell.source, state))]
print(json.dumps({
    "models_file": models.__file__,
    "calls": {name: outcome(call) for name, call in calls.items()},
    "helpers": {name: outcome(getattr(checks, name)) for name in %s},
    "check_cells": cells,
    "after_todo": after_todo,
}))
''' % sorted(CHECK_HELPERS)


def run_probe(folder: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**env, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, course.release.Report]:
    out = tmp_path_factory.mktemp("course") / "release"
    return out, course.release.make_release(out)


@pytest.fixture(scope="module")
def release_probe(release) -> dict:
    return run_probe(release[0])


def outcome(function) -> list[str]:
    try:
        function()
        return ["pass", ""]
    except Exception as error:
        return [type(error).__name__, str(error)]


@pytest.fixture(scope="module")
def source_probe() -> dict:
    """What PROBE reports on the source, with its solutions."""
    return run_probe(REPO_DIR)


def region_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """(lines inside solution regions, lines outside them)."""
    inside, outside, open_ = [], [], False
    for line in lines:
        marker = MARKER.match(line)
        if marker:
            open_ = marker["kind"] == "BEGIN"
        else:
            (inside if open_ else outside).append(line)
    return inside, outside


def text_lines(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        return [line for cell in nbformat.read(path, as_version=4).cells for line in cell.source.splitlines()]
    return path.read_text(encoding="utf-8").splitlines()


def solution_lines(path: Path) -> set[str]:
    """Lines that the source has only inside solution regions (stripped; comments and blanks left out)."""
    inside, outside = region_lines(text_lines(path))
    elsewhere = {line.strip() for line in outside}
    return {line.strip() for line in inside if line.strip() and not line.strip().startswith("#")} - elsewhere


# ---------------------------------------------------------------------------------------------------------
# What the release holds
# ---------------------------------------------------------------------------------------------------------
def test_release_holds_the_course_and_nothing_ignored_or_for_instructors(release):
    out, report = release
    files = set(report.files)
    for needed in [*NOTEBOOKS, "course/checks.py", "course/expected_values.npz", "course/reference_design.json", "data_load.py",
                   "pipeline/explain.py", "filters.py", "models.py", "course/notebook_helpers.py", "pipeline/keypoint_pipeline.py", "pipeline/haar_search.py", "pipeline/faces.py", "pipeline/tracking.py",
                   "pipeline/training.py", "detect.py", "README.md", "requirements.txt", "images/sunglasses.png",
                   "saved_models/keypoints_fast.pt", "saved_models/keypoints_course.pt", "detector_architectures/haar.py"]:
        assert needed in files, f"{needed} is missing from the release"
    for left_out in LEFT_OUT:
        assert left_out not in files
    assert not [f for f in files if f.split("/")[0] in {"tests", ".ci", "data", ".cache", "outputs", "runs", "release", ".git"}]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or f.startswith("saved_models/student_")]
    assert json.loads((out / course.release.MANIFEST).read_text())["files"] == report.files


def test_release_copies_what_git_keeps_and_nothing_git_ignores(release):
    out, report = release
    if shutil.which("git") is None or not (REPO_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    listed = "\n".join(report.files) + "\n"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO_DIR, input=listed, capture_output=True, text=True)
    assert ignored.stdout.split() == [], f"the release holds files git ignores: {ignored.stdout.split()[:5]}"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_DIR, capture_output=True, text=True, check=True).stdout.split()
    instructors = ("tests/", ".ci/", *LEFT_OUT)
    expected = {f for f in tracked if (REPO_DIR / f).is_file() and not f.startswith(instructors)}
    assert expected <= set(report.files), f"tracked files missing from the release: {sorted(expected - set(report.files))[:5]}"


def test_files_other_than_code_notebooks_and_readme_are_copied_unchanged(release):
    out, report = release
    for relative in report.files:
        if not relative.endswith((".py", ".ipynb")) and relative != "README.md":
            assert (out / relative).read_bytes() == (REPO_DIR / relative).read_bytes(), relative


def test_readme_leaves_out_the_tests_and_the_instructors_page(release):
    out, report = release
    source, released = (REPO_DIR / "README.md").read_text(), (out / "README.md").read_text()
    assert "<!-- BEGIN INSTRUCTORS -->" in source and "python -m pytest" in source and "docs/instructors.md" in source
    assert "INSTRUCTORS" not in released and "pytest" not in released.split("## Dependencies")[0] and "docs/instructors.md" not in released
    assert released.splitlines()[0] == source.splitlines()[0]
    assert "## The course" in released and "## Results" in released
    docs = {f for f in report.files if f.startswith("docs/")}
    assert docs == {f"docs/{p.name}" for p in (REPO_DIR / "docs").glob("*.md")} - {"docs/instructors.md", "docs/grading.md"} and "docs/pipeline.md" in docs


INSTRUCTOR_PATHS = ("tests/", ".ci/", "pytest.ini", "course.release", "course/release.py", "course.grade", "course/grade.py", "instructors only",
                    "docs/instructors.md", "requirements-test.txt", "course/expected.py", "course.expected", "docs/grading.md", "grading_time")


def test_no_released_file_mentions_what_only_instructors_have(release):
    out, report = release
    for relative in report.files:
        if relative.endswith((".py", ".ipynb", ".md")):
            text = "\n".join(text_lines(out / relative))
            named = [path for path in INSTRUCTOR_PATHS if path in text] + re.findall(r"\btest_\w+\.py", text)
            assert not named, f"{relative} mentions {named}, which the release does not have"
    readme = (out / "README.md").read_text()
    assert "pytest" not in readme.split("## Dependencies")[0], "the students' README must not ask them to run the tests"


def colab_addresses(folder: Path) -> list[str]:
    """Every GitHub address in the notebooks' badges and setup cells, and the README's badge."""
    found = []
    for name in [*NOTEBOOKS, "README.md"]:
        text = course.release.INSTRUCTORS.sub("", "\n".join(text_lines(folder / name)))  # the release's text
        found += re.findall(r"https://(?:colab\.research\.google\.com/github/|github\.com/)([^/\s\"')]+/[^/\s\"')]+)", text)
    return found


def test_the_repository_address_is_in_one_place_and_stamped_into_the_release(tmp_path):
    from course import notebook_helpers

    placeholder = notebook_helpers.REPO_URL.removeprefix("https://github.com/")
    source = colab_addresses(REPO_DIR)
    assert len(source) >= 9 and set(source) == {placeholder}, "badges and setup cells must all use course.notebook_helpers.REPO_URL"
    for name in NOTEBOOKS:
        cells = nbformat.read(REPO_DIR / name, as_version=4).cells
        assert f"/{placeholder}/blob/main/{name})" in cells[0].source, f"{name}: the badge must open this notebook"
    out = tmp_path / "release"
    course.release.make_release(out, repo_url="https://github.com/acme/keypoints-course")
    assert set(colab_addresses(out)) == {"acme/keypoints-course"}
    stamped = [f for f in course.release.release_files(out) if "COURSE-OWNER" in (out / f).read_text(errors="ignore")]
    assert not stamped, f"the placeholder is left in {stamped}"


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", "https://github.com/COURSE-OWNER/COURSE-REPOSITORY"])
def test_a_repository_address_that_colab_cannot_open_is_refused_in_one_line(tmp_path, capsys, url):
    assert course.release.main(["--out", str(tmp_path / "out"), "--repo-url", url]) == 1
    printed = capsys.readouterr().err
    assert printed.startswith("error: --repo-url") and printed.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_colab_setup_keeps_work_in_drive_says_what_each_notebook_needs_and_fails_in_one_line():
    setup = nbformat.read(REPO_DIR / NOTEBOOKS[0], as_version=4).cells[2].source
    colab = setup.split("if IS_COLAB:", 1)[1].split("%matplotlib", 1)[0]
    assert "raise SystemExit(" in colab and "check=True" not in colab, "a failed clone must say what to do, without a traceback"
    assert "KEEP_IN_DRIVE = True" in colab and 'drive.mount("/content/drive")' in colab, "Colab work must outlive the runtime"
    for name in NOTEBOOKS:
        cells = nbformat.read(REPO_DIR / name, as_version=4).cells
        assert cells[2].source == setup, f"{name}: the setup cells must be the same"
        assert "**What this notebook needs from" in cells[1].source, f"{name}: say what it needs from the earlier notebooks"


# ---------------------------------------------------------------------------------------------------------
# No solution left
# ---------------------------------------------------------------------------------------------------------
def test_no_marker_and_no_solution_line_is_left(release):
    out, report = release
    checked_files = 0
    for relative in report.files:
        if not relative.endswith((".py", ".ipynb")):
            continue
        released = text_lines(out / relative)
        assert not [line for line in released if MARKER.match(line)], f"{relative} still has a solution marker"
        secret = solution_lines(REPO_DIR / relative)
        leaked = sorted(secret & {line.strip() for line in released})
        assert not leaked, f"{relative} still holds solution code: {leaked[:3]}"
        checked_files += bool(secret)
    assert checked_files >= 6, "the source should have solutions in the four notebooks and three modules"


def test_no_released_file_holds_the_code_of_any_solution(release):
    # Every file, benchmarks and text included: a solution line of 40 characters or more, or two lines that follow
    # each other in a solution, found anywhere in the release is a leak.
    out, report = release
    regions = course.release.solution_regions(REPO_DIR)
    assert len(regions) >= 15 and all(regions.values())
    assert course.release.find_leaks(out, report.files, regions) == []
    # ... and the search finds them where they are: in the source, and in the trainer that the release leaves out.
    found = {leak.path for leak in course.release.find_leaks(REPO_DIR, course.release.release_files(REPO_DIR) + ["pipeline/trainer.py"], regions)}
    assert {"2_Define_Train_Network.ipynb", "3_Facial_Keypoint_Detection_Complete_Pipeline.ipynb", "data_load.py", "models.py", "filters.py",
            "pipeline/trainer.py"} <= found


def test_a_release_that_would_hold_a_solution_stops_with_one_line(tmp_path, capsys):
    source = fake_course(tmp_path / "course", "def f(x):\n    # TODO: twice x, plus one\n    ### BEGIN SOLUTION\n    return 2 * x + 1\n    ### END SOLUTION\n")
    (source / "helpers.py").write_text("def g(y):\n    return 2 * y + 1\n")  # not a solution region
    (source / "notes.md").write_text("# notes\n\n    def f(x):\n        return 2 * x + 1\n")
    assert course.release.main(["--source", str(source), "--out", str(tmp_path / "out")]) == 0  # short lines alone: idioms
    capsys.readouterr()
    (source / "notes.md").write_text("    y = some_function_with_a_long_name(x) + another_one(x) - 1\n")
    (source / "mod.py").write_text("def f(x):\n    # TODO: y\n    ### BEGIN SOLUTION\n    y = some_function_with_a_long_name(x) + another_one(x) - 1\n"
                                   "    return y\n    ### END SOLUTION\n")
    assert course.release.main(["--source", str(source), "--out", str(tmp_path / "out2")]) == 1
    printed = capsys.readouterr().err
    assert printed.startswith("error: notes.md:1: holds the solution of mod.py") and printed.count("\n") == 1
    assert not (tmp_path / "out2").exists()


def test_every_stub_names_what_to_write_and_keeps_the_indentation(release):
    out, report = release
    module_stubs = {stub.name for stub in report.stubs if stub.path.endswith(".py")}
    assert module_stubs == MODULE_STUBS
    for stub in report.stubs:
        if not stub.path.endswith(".py"):
            continue
        begin = (REPO_DIR / stub.path).read_text().splitlines()[stub.line - 1]
        indent = begin[: len(begin) - len(begin.lstrip())]
        released = (out / stub.path).read_text()
        notebook = MODULE_NOTEBOOKS[stub.path]
        message = f"{stub.name} is not written yet: fill in its TODO ({notebook}), save the file and run this again"
        assert f'{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError("{message}")\n' in released


def test_notebooks_are_cleared_with_answers_and_stubs_in_place(release):
    out, _ = release
    for name in NOTEBOOKS:
        source, released = (nbformat.read(p / name, as_version=4) for p in (REPO_DIR, out))
        assert [c.id for c in released.cells] == [c.id for c in source.cells], f"{name}: cells added, lost or moved"
        for before, after in zip(source.cells, released.cells):
            meta = after.metadata.get("nbgrader", {})
            if after.cell_type == "code":
                assert after.outputs == [] and after.execution_count is None
            if meta.get("solution") and after.cell_type == "markdown":
                assert "YOUR ANSWER HERE" in after.source and "Model answer" not in after.source, f"{name} {after.id}"
                assert after.source.startswith("**Answer:**")
            elif meta.get("solution"):
                assert "# YOUR CODE HERE" in after.source and "raise NotImplementedError(" in after.source, f"{name} {after.id}"
            else:
                assert after.source == before.source, f"{name} {after.id}: a cell without solutions must not change"
            assert_cell_protection(after, f"{name} {after.id}")
        nbformat.validate(released)


def assert_cell_protection(cell, where: str) -> None:
    """As nbgrader's generate_assignment leaves them: every nbgrader cell undeletable; check cells and other
    locked cells read-only; solution cells editable."""
    meta = cell.metadata.get("nbgrader")
    if meta is None:
        assert "deletable" not in cell.metadata and "editable" not in cell.metadata, f"{where}: a plain cell is protected"
        return
    assert cell.metadata.get("deletable") is False, f"{where}: an nbgrader cell can be deleted"
    read_only = not meta.get("solution") and bool(meta.get("grade") or meta.get("locked"))
    assert (cell.metadata.get("editable") is False) == read_only, f"{where}: editable should be {not read_only}"


def test_release_folder_and_files_are_readable_by_everyone(release):
    # The release is published as is: a folder others can enter and files (the saved models too) others can read.
    out, report = release
    assert out.stat().st_mode & 0o777 == 0o755
    for relative in report.files:
        mode = (out / relative).stat().st_mode & 0o777
        assert mode & 0o644 == 0o644, f"{relative} has mode {mode:o}"
        if relative.startswith("saved_models/"):
            assert mode == 0o644, f"{relative} has mode {mode:o}"
    folders = {(out / f).parent for f in report.files}
    assert all(folder.stat().st_mode & 0o755 == 0o755 for folder in folders)


def test_source_notebooks_pair_every_solution_with_a_check(release):
    _, report = release
    ids = []
    for name in NOTEBOOKS:
        cells = nbformat.read(REPO_DIR / name, as_version=4).cells
        for cell, following in zip(cells, cells[1:] + [None]):
            meta = cell.metadata.get("nbgrader", {})
            if meta:
                ids.append(meta["grade_id"])
                assert meta["schema_version"] == 3
            if meta.get("solution") and cell.cell_type == "code":
                after = following.metadata.get("nbgrader", {}) if following is not None else {}
                assert after.get("grade") and not after.get("solution"), f"{name}: solution cell {cell.id} is not followed by a check cell"
    assert set(MODULE_CHECK_CELLS) <= set(ids) and len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------------------
# The checks: helpful on the stubs, passing on the solutions
# ---------------------------------------------------------------------------------------------------------
def test_released_modules_import_and_their_stubs_raise_not_implemented(release, release_probe):
    out, _ = release
    assert Path(release_probe["models_file"]).resolve().parent == out.resolve()
    for name, (kind, message) in release_probe["calls"].items():
        assert kind == "NotImplementedError", f"{name}: {kind} {message}"
        assert message.startswith(name.split(".")[0]) and "is not written yet: fill in its TODO (notebook " in message, message


def test_check_helpers_fail_helpfully_on_the_stubs_and_pass_on_the_solutions(release_probe, source_probe):
    for helper, module in CHECK_HELPERS.items():
        kind, message = release_probe["helpers"][helper]
        assert kind == "AssertionError" and "is not implemented yet: fill in the TODO in" in message and module in message, (helper, kind, message)
        assert "\n" not in message
        assert source_probe["helpers"][helper] == ["pass", ""], (helper, source_probe["helpers"][helper])


# Check cells of the notebooks' own TODOs (PROBE gives them what their TODO cells use from the notebook).
NOTEBOOK_CHECK_CELLS = ("check-train-one-epoch", "check-validate", "check-training-choices", "check-fit", "check-edge-filter",
                        "check-keypoints-from-boxes", "check-clown-nose")


def test_check_cells_fail_helpfully_on_the_stubs(release_probe, source_probe):
    cells = release_probe["check_cells"]
    assert set(cells) == set(MODULE_CHECK_CELLS) | set(NOTEBOOK_CHECK_CELLS)
    for grade_id, (kind, message) in cells.items():
        assert kind == "AssertionError", (grade_id, kind, message)
        if grade_id in MODULE_CHECK_CELLS:
            assert "is not implemented yet" in message and MODULE_CHECK_CELLS[grade_id] in message, (grade_id, message)
        else:  # run before its TODO cell: what that cell defines is missing
            assert "is not defined yet" in message and "the cell above" in message, (grade_id, message)
    assert set(release_probe["after_todo"]) == set(source_probe["after_todo"]) == set(NOTEBOOK_CHECK_CELLS)
    for grade_id in NOTEBOOK_CHECK_CELLS:
        (todo_kind, todo_message), (kind, message) = release_probe["after_todo"][grade_id]
        # Released, the TODO cell is a stub: it raises at once, or defines a function that does when called.
        assert todo_kind in ("NotImplementedError", "pass") and (todo_kind == "pass" or todo_message.endswith("see the TODO above")), (grade_id, todo_message)
        assert kind == "AssertionError" and ("is not defined yet" in message or "is not implemented yet" in message), (grade_id, message)
        assert source_probe["after_todo"][grade_id] == [["pass", ""], ["pass", ""]], (grade_id, source_probe["after_todo"][grade_id])


def test_module_check_cells_pass_on_the_solutions(source_probe):
    for grade_id in MODULE_CHECK_CELLS:
        assert source_probe["check_cells"][grade_id] == ["pass", ""], (grade_id, source_probe["check_cells"][grade_id])


# ---------------------------------------------------------------------------------------------------------
# Errors and safety
# ---------------------------------------------------------------------------------------------------------
def fake_course(root: Path, module: str) -> Path:
    root.mkdir()
    (root / "mod.py").write_text(module)
    return root


@pytest.mark.parametrize(
    "module, expected",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "error: mod.py:2: BEGIN SOLUTION without a matching ### END SOLUTION"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "error: mod.py:3: END SOLUTION without a BEGIN SOLUTION before it"),
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
         "error: mod.py:3: BEGIN SOLUTION inside the region opened at line 2: close it with ### END SOLUTION first"),
    ],
)
def test_unbalanced_markers_give_a_one_line_error_and_no_release(tmp_path, capsys, module, expected):
    source = fake_course(tmp_path / "course", module)
    out = tmp_path / "out"
    assert course.release.main(["--source", str(source), "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == expected + "\n"
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["course"], "a failed run must leave nothing behind"


def test_command_line_writes_the_release_and_says_what_it_did(tmp_path):
    source = fake_course(tmp_path / "course", 'def f(x):\n    """Twice x."""\n    # TODO: return twice x\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n')
    done = subprocess.run([sys.executable, "-m", "course.release", "--source", str(source), "--out", str(tmp_path / "out")],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 solutions stubbed" in done.stdout
    assert (tmp_path / "out" / "mod.py").read_text() == (
        'def f(x):\n    """Twice x."""\n    # TODO: return twice x\n    # YOUR CODE HERE\n'
        '    raise NotImplementedError("f in mod.py is not written yet: fill in the TODO above it, save the file and run this again")\n')
    assert "warning: no --repo-url" in done.stderr


def test_a_new_release_replaces_the_old_one_but_never_another_folder(tmp_path):
    source = fake_course(tmp_path / "course", "x = 1\n")
    out = tmp_path / "out"
    course.release.make_release(out, source)
    (out / "stale.txt").write_text("from an earlier release")
    course.release.make_release(out, source)
    assert sorted(p.name for p in out.iterdir()) == [course.release.MANIFEST, "mod.py"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "out"], "no temporary folder is left"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="is not a release made by course/release.py"):
        course.release.make_release(tmp_path / "mine", source)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ReleaseError, match="would overwrite the course itself"):
        course.release.make_release(tmp_path, source)


def notebook(*cells) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=list(cells))


def nbgrader(grade_id: str, solution: bool = False, grade: bool = False, points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def test_release_notebook_follows_nbgrader():
    code = nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\nprint(y)", metadata=nbgrader("a", solution=True))
    code.outputs = [nbformat.v4.new_output("stream", text="2")]
    code.execution_count = 4
    code.metadata["ExecuteTime"] = {"start": "then"}
    whole = nbformat.v4.new_code_cell("z = 3", metadata=nbgrader("b", solution=True))
    answer = nbformat.v4.new_markdown_cell("My answer: 42", metadata=nbgrader("c", solution=True, grade=True, points=1))
    test = nbformat.v4.new_code_cell("assert y == 2", metadata=nbgrader("d", grade=True, points=2))
    plain = nbformat.v4.new_markdown_cell("Some prose")
    nb = notebook(code, whole, answer, test, plain)
    nb.metadata["widgets"] = {}
    stubs = course.release.release_notebook(nb, "n.ipynb")
    assert code.source == 'x = 1\n# YOUR CODE HERE\nraise NotImplementedError("write y: see the TODO above")\nprint(y)'
    assert code.outputs == [] and code.execution_count is None and "ExecuteTime" not in code.metadata
    assert whole.source == '# YOUR CODE HERE\nraise NotImplementedError("write z: see the TODO above")'
    assert answer.source == "YOUR ANSWER HERE" and test.source == "assert y == 2" and plain.source == "Some prose"
    assert test.metadata["editable"] is False and test.metadata["deletable"] is False and "editable" not in code.metadata
    assert code.metadata["deletable"] is False and whole.metadata["deletable"] is False and answer.metadata["deletable"] is False
    for cell in nb.cells:
        assert_cell_protection(cell, cell.source[:20])


    assert "widgets" not in nb.metadata
    assert [(s.path, s.line, s.cell, s.kind) for s in stubs] == [("n.ipynb", 2, 1, "code"), ("n.ipynb", 0, 2, "code"), ("n.ipynb", 0, 3, "answer")]


def test_marked_lines_of_a_written_answer_become_the_answer_stub():
    answer = nbformat.v4.new_markdown_cell("**Answer:**\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\nSee above.",
                                           metadata=nbgrader("why", solution=True, grade=True, points=1))
    stubs = course.release.release_notebook(notebook(answer), "n.ipynb")
    assert answer.source == "**Answer:**\nYOUR ANSWER HERE\nSee above."
    assert [(s.path, s.line, s.name, s.cell, s.kind) for s in stubs] == [("n.ipynb", 2, "answer", 1, "answer")]


def test_a_locked_cell_that_is_not_graded_is_made_read_only():
    locked = nbformat.v4.new_code_cell("setup = 1", metadata=nbgrader("setup"))
    course.release.release_notebook(notebook(locked), "n.ipynb")
    assert locked.metadata["editable"] is False and locked.metadata["deletable"] is False


@pytest.mark.parametrize(
    "cell, message",
    [
        (nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"), "n.ipynb cell 1:1: a solution region in a cell not marked as a solution"),
        (nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1", metadata=nbgrader("a", solution=True)), "n.ipynb cell 1:1: BEGIN SOLUTION without a matching"),
        (nbformat.v4.new_code_cell("assert True", metadata=nbgrader("a", grade=True)), "graded cell 'a' has no points"),
        (nbformat.v4.new_markdown_cell("Why?", metadata=nbgrader("a", solution=True)), "must be marked both grade and solution"),
        (nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": False, "solution": True, "grade_id": "a", "schema_version": 3}}),
         "n.ipynb cell 1: nbgrader metadata without locked (nbgrader schema 3 needs them)"),
        (nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": False, "solution": True, "grade_id": "", "locked": False}}),
         "n.ipynb cell 1: nbgrader metadata without grade_id"),
    ],
)
def test_release_notebook_rejects_what_nbgrader_would(cell, message):
    with pytest.raises(ReleaseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        course.release.release_notebook(notebook(cell), "n.ipynb")


def test_duplicate_grade_ids_are_rejected():
    cells = [nbformat.v4.new_code_cell("assert True", metadata=nbgrader("same", grade=True, points=1)) for _ in range(2)]
    with pytest.raises(ReleaseError, match="n.ipynb cell 2: grade_id 'same' is also used by cell 1"):
        course.release.release_notebook(notebook(*cells), "n.ipynb")


def test_gitignore_pattern_rules():
    ignored = course.release.is_ignored
    assert ignored("data", True, ["data/"]) and not ignored("data", False, ["data/"])  # "name/": folders only
    assert ignored("release", True, ["/release"]) and not ignored("a/release", True, ["/release"])  # "/name": from the top
    assert ignored("a/b/notes.tmp", False, ["*.tmp"]) and ignored("a/b/__pycache__", True, ["__pycache__/"])  # anywhere
    assert ignored("saved_models/student_x.pt", False, ["saved_models/student_*.pt"])
    assert not ignored("other/saved_models/student_x.pt", False, ["saved_models/student_*.pt"])  # a slash inside: from the top


def test_a_folders_own_gitignore_keeps_what_it_ignores_out_of_the_release(tmp_path):
    (tmp_path / "course.py").write_text("x = 1\n")
    (tmp_path / ".ruff_cache" / "0.1").mkdir(parents=True)  # a tool's cache ignores itself with its own .gitignore
    (tmp_path / ".ruff_cache" / ".gitignore").write_text("# made by a linter\n*\n")
    (tmp_path / ".ruff_cache" / "0.1" / "123").write_text("cache")
    (tmp_path / "notes" / "drafts").mkdir(parents=True)
    (tmp_path / "notes" / ".gitignore").write_text("/drafts/\n*.bak\n")
    for name in ("notes/keep.md", "notes/old.bak", "notes/drafts/a.md", "other.bak"):
        (tmp_path / name).write_text("text\n")
    assert course.release.release_files(tmp_path) == ["course.py", "notes/.gitignore", "notes/keep.md", "other.bak"]


def test_the_git_link_file_of_a_worktree_is_not_released(tmp_path):
    (tmp_path / "course.py").write_text("x = 1\n")
    (tmp_path / ".git").write_text("gitdir: /somewhere/.git/worktrees/course\n")  # a worktree's or submodule's .git
    assert course.release.release_files(tmp_path) == ["course.py"]


@pytest.mark.parametrize(
    "path, is_dir, ignored",
    [("data", True, True), ("outputs", True, True), ("release", True, True), ("images", True, False),
     ("saved_models/student_net.pt", False, True), ("saved_models/keypoints_fast.pt", False, False),
     ("models.pyc", False, True), ("a/b/__pycache__", True, True), ("x.tmp", False, True), ("data_load.py", False, False)],
)
def test_gitignore_patterns(path, is_dir, ignored):
    assert course.release.is_ignored(path, is_dir, course.release.ignore_patterns(REPO_DIR)) is ignored
