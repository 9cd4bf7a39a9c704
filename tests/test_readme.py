"""The README and docs/ against what they describe: the test command CI runs, quick and full mode, the links, the
figures against the model cards, the dependency table against the requirement files, and the README's length."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
README = REPO_DIR / "README.md"
DOCS = sorted((REPO_DIR / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MODEL_CARDS = sorted((REPO_DIR / "saved_models").glob("*.md"))
# The README fits on two screens; what does not belongs in docs/.
README_MAX_BYTES = 8500
# A keypoint error as the pages state it (NME_io, NME_box, a region's or a pose's error): 0.0xx or 0.0xxx.
ERROR_FIGURE = re.compile(r"(?<![\d.])0\.0\d{2,3}(?![\d.])")


def load_root_conftest():
    """The repository's conftest.py as a module of its own (for its constants; pytest has registered it already)."""
    spec = importlib.util.spec_from_file_location("repository_conftest", REPO_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading or the end of an HTML comment block."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |^<!-- END|\Z)", markdown, flags=re.M | re.S)
    assert match, f"the README has no '## {heading}' section"
    return match.group(1)


def readme_test_command() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", section(README.read_text(encoding="utf-8"), "Tests"), flags=re.S)
    assert len(blocks) == 1, "the README's Tests section holds one command block"
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(lines) == 1, "the README's test command is one line"
    return lines[0].strip()


def ci_test_command() -> str:
    lines = [line.strip() for line in (REPO_DIR / ".ci" / "run").read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines[-1]


# ---------------------------------------------------------------------------------------------------------
# The test command
# ---------------------------------------------------------------------------------------------------------
def test_ci_runs_the_readmes_test_command_as_written():
    command = readme_test_command()
    assert ci_test_command() == command, ".ci/run must end with the README's test command, word for word"
    assert command.startswith("pip install -r requirements-test.txt && ") and command.endswith("python -m pytest")
    assert "FKP_QUICK" not in command, "quick mode is the default: the command needs no variable to remember"


def test_the_suite_runs_in_quick_mode_unless_full_mode_is_asked_for(request):
    conftest = load_root_conftest()
    full = request.config.getoption("--full")
    assert (os.environ.get("FKP_QUICK") == "1") is not full
    if not conftest.cell_timeout_given(request.config):
        expected = conftest.FULL_CELL_TIMEOUT if full else conftest.QUICK_CELL_TIMEOUT
        assert request.config.option.nbval_cell_timeout == expected
    # Notebook 2's full training (one cell, at most 15 minutes on a quiet 2-core CPU) fits the full mode's limit.
    assert conftest.FULL_CELL_TIMEOUT >= 2 * 15 * 60 and conftest.QUICK_CELL_TIMEOUT < conftest.FULL_CELL_TIMEOUT


def write_notebook(path: Path, *cells: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def run_pytest(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture
def suite_settings(tmp_path: Path) -> Path:
    """A folder with the repository's conftest.py and pytest.ini, for notebooks of a test's own."""
    shutil.copy(REPO_DIR / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(REPO_DIR / "pytest.ini", tmp_path / "pytest.ini")
    return tmp_path


def test_notebook_kernels_see_quick_mode_and_a_timed_out_cell_skips_the_rest_in_one_line(suite_settings):
    write_notebook(
        suite_settings / "slow.ipynb",
        'import os\nassert os.environ.get("FKP_QUICK") == "1", os.environ.get("FKP_QUICK")',
        "import time\ntime.sleep(120)",
        "x = 1",
        "y = 2",
    )
    run = run_pytest(suite_settings, "--nbval-cell-timeout", "5", "slow.ipynb", env={"FKP_QUICK": "0"})
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "Timeout of 5 seconds exceeded" in out and re.search(r"1 failed, 1 passed, 2 skipped in", out), out
    assert "xpass" not in out.lower() and "xfail" not in out.lower(), out
    [skipped] = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped.startswith("SKIPPED [2]") and "slow.ipynb: an earlier cell timed out" in skipped


def test_full_mode_runs_the_notebooks_without_quick_mode(suite_settings):
    write_notebook(suite_settings / "full.ipynb", 'import os\nassert "FKP_QUICK" not in os.environ and "CI" not in os.environ, dict(os.environ)')
    run = run_pytest(suite_settings, "--full", "full.ipynb", env={"FKP_QUICK": "1", "CI": "true"})
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr


# ---------------------------------------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------------------------------------
def test_the_readme_fits_on_two_screens_and_leaves_the_rest_to_docs():
    import course.release

    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move detail into docs/ (at most {README_MAX_BYTES})"
    text = README.read_text(encoding="utf-8")
    tests_section = section(text, "Tests")
    for page in DOCS:
        relative = f"docs/{page.name}"
        if relative in course.release.INSTRUCTOR_ONLY:  # left out of the students' release: linked from the instructors' part only
            assert relative in tests_section and relative not in text.replace(tests_section, ""), relative
        else:
            assert relative in text.replace(tests_section, ""), f"the README does not link {relative}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {github_anchor(match) for match in re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_DIR).as_posix())
def test_every_link_between_the_pages_leads_somewhere(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        assert destination.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(destination), f"{page.name} links to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_DIR).as_posix())
def test_every_error_figure_of_the_pages_is_the_model_cards(page):
    """The model cards (saved_models/*.md) are the source of the models' figures: a page quoting an error figure
    quotes one of theirs, so a figure measured again is changed there and the pages follow."""
    in_cards = {figure for card in MODEL_CARDS for figure in ERROR_FIGURE.findall(card.read_text(encoding="utf-8"))}
    stray = sorted(set(ERROR_FIGURE.findall(page.read_text(encoding="utf-8"))) - in_cards)
    assert not stray, f"{page.name} states error figures that no model card holds: {stray}"


def headline_rows() -> dict[str, list[str]]:
    """The README's table of headline figures: the first cell of each row -> the figures in its other cells."""
    table = [line for line in section(README.read_text(encoding="utf-8"), "Results").splitlines() if line.startswith("|")]
    rows = {}
    for line in table[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = re.findall(r"\d+(?:\.\d+)?(?: %| ms| of \d+)?", " ".join(cells[1:]))
    return rows


def test_the_readmes_headline_figures_are_the_model_cards():
    rows = headline_rows()
    assert len(rows) == 3 and any("dlib" in name for name in rows) and any("MediaPipe" in name for name in rows)
    cards = " ".join(card.read_text(encoding="utf-8") for card in MODEL_CARDS)
    for name, figures in rows.items():
        assert figures, name
        for figure in figures:
            assert re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", cards), f"the README's {figure} ({name}) is not in the model card"


# ---------------------------------------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------------------------------------
def requirement_names(path: Path) -> set[str]:
    """The package names a requirements file asks for, with those of the files it includes (``-r FILE``)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~ ;]", line, maxsplit=1)[0].lower())
    return names


def test_the_dependency_table_names_each_package_once_and_each_requirement():
    rows = [line for line in section(README.read_text(encoding="utf-8"), "Dependencies").splitlines() if line.startswith("|")][2:]
    listed = [name.strip().lower() for row in rows for name in re.sub(r"\(.*?\)", "", row.strip("|").split("|")[0]).split(",")]
    assert len(listed) == len(set(listed)), f"the dependency table lists a package twice: {sorted(n for n in listed if listed.count(n) > 1)}"
    required = set()
    for name in ("requirements.txt", "requirements-test.txt", "requirements-light.txt"):
        if (REPO_DIR / name).is_file():
            required |= requirement_names(REPO_DIR / name)
    assert required == set(listed), f"missing from the table: {sorted(required - set(listed))}; not required: {sorted(set(listed) - required)}"
