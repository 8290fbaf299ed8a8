"""The Gradescope autograder: the zip `grader gradescope` builds, run as Gradescope runs it.

One zip (notebook 01, the lightest) is built once; its `run_autograder` grades submissions in
temporary folders laid out as Gradescope lays out `/autograder`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import NotebookNode

from grader.cli import main
from grader.config import load_config
from grader.engine import isolation
from grader.engine.isolation import Isolation
from grader.gradescope import Layout, build_autograder, find_submitted, lock_down, run_autograder
from tests.conftest import ROOT, cell_of, solution

NOTEBOOK = "01_autograd_basics"
SECRET = 271828182845904523536028747135266249775  # long enough to be found if it leaked
CHECKS = 4
POINTS = 6.0
TOP_LEVEL = {"score", "max_score", "execution_time", "output", "output_format"}
TOP_LEVEL |= {"test_output_format", "test_name_format", "visibility", "stdout_visibility"}
TOP_LEVEL |= {"extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output"}
TEST_KEYS |= {"output_format", "tags", "visibility", "extra_data"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, reference_cache: Path) -> Path:
    config = dataclasses.replace(
        load_config(ROOT), cache_dir=str(reference_cache), hidden_seed=SECRET
    )
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    assert build_autograder(config, out, [NOTEBOOK]) == [NOTEBOOK]
    return out


def layout(bundle: Path, root: Path, files: dict[str, NotebookNode | bytes]) -> Layout:
    """`root` as Gradescope lays out /autograder for one submission of `files`."""
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / "source" / script).chmod(0o755)
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    (root / "submission").mkdir()
    for name, content in files.items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            nbformat.write(content, path)
    (root / "submission_metadata.json").write_text('{"users": [{"name": "A Student"}]}')
    return Layout(root)


def autograde(where: Layout) -> tuple[dict[str, Any], str]:
    """Run the zip's run_autograder as Gradescope does (as root, in /autograder)."""
    environment = {**os.environ, "GRADER_AUTOGRADER_ROOT": str(where.root)}
    environment["GRADER_AUTOGRADER_PYTHON"] = sys.executable  # setup.sh's install, skipped
    done = subprocess.run(
        [str(where.root / "run_autograder")],
        cwd=where.root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(where.results.read_text()), done.stdout


def attack(target: Path, how: str) -> str:
    """A cell's first lines: the attack, then the solution's code only if it worked."""
    return (
        "import os\n"
        "try:\n"
        f"    {how.format(path=str(target))}\n"
        "except OSError as error:\n"
        "    raise RuntimeError(f'attack failed: {type(error).__name__} as uid {os.getuid()}')\n"
    )


def reading(where: Layout) -> str:
    """Attacks that read the references, the hidden variant's plan and the students' names."""
    references = sorted((where.course / "references" / NOTEBOOK).glob("*.json"))
    read = attack(references[0], "stolen = open({path!r}).read()")
    read += attack(where.course / "variants.json", "stolen += open({path!r}).read()")
    return read + attack(where.metadata, "stolen += open({path!r}).read()")


def writing(where: Layout) -> str:
    """Attacks that print a fake score and write results.json (and a file beside it)."""
    write = 'print(\'{"score": 6.0, "tests": []}\')\n'
    write += attack(where.results, "open({path!r}, 'w').write('{{\"score\": 6.0}}')")
    return write + attack(where.results.parent / "extra.json", "open({path!r}, 'w').write('x')")


def hostile(where: Layout) -> NotebookNode:
    nb = solution(NOTEBOOK)
    parabola, curve = cell_of(nb, "parabola_descent"), cell_of(nb, "curve_fit")
    parabola.source = reading(where) + parabola.source
    curve.source = writing(where) + curve.source
    return nb


@pytest.fixture(scope="module")
def graded(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """results.json, stdout and the layout of each submission, graded once."""
    exercise = nbformat.read(ROOT / "exercises" / f"{NOTEBOOK}.ipynb", as_version=4)
    outcomes = {}
    for kind in ("solution", "exercise", "hostile", "misnamed"):
        where = Layout(tmp_path_factory.mktemp(kind) / "autograder")
        files: dict[str, NotebookNode | bytes] = {
            "solution": {f"{NOTEBOOK}.ipynb": solution(NOTEBOOK)},
            "exercise": {f"{NOTEBOOK}.ipynb": exercise},
            "hostile": {"results.json": b'{"score": 6.0}'},
            "misnamed": {f"{NOTEBOOK} (1).ipynb": solution(NOTEBOOK)},
        }[kind]
        layout(bundle, where.root, files)
        if kind == "hostile":  # the paths it aims at are known once the layout exists
            (where.submission / "work").mkdir()
            nbformat.write(hostile(where), where.submission / "work" / f"{NOTEBOOK}.ipynb")
        outcomes[kind] = (*autograde(where), where)
    return outcomes


def assert_follows_the_specification(data: dict[str, Any]) -> None:
    """Gradescope's autograder results.json: fields, types, visibility and formats."""
    assert set(data) <= TOP_LEVEL
    assert data["visibility"] in VISIBILITIES and data["stdout_visibility"] == "hidden"
    assert {data[key] for key in ("output_format", "test_output_format")} == {"text"}
    assert isinstance(data["output"], str) and isinstance(data["execution_time"], float)
    for test in data["tests"]:
        assert set(test) <= TEST_KEYS
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
        assert test["visibility"] in VISIBILITIES
    assert data["score"] == sum(test["score"] for test in data["tests"])
    json.dumps(data, allow_nan=False)


@pytest.mark.slow
def test_a_solution_scores_full_marks(graded: dict[str, Any]) -> None:
    data, log, _ = graded["solution"]
    assert_follows_the_specification(data)
    assert (data["score"], data["max_score"], len(data["tests"])) == (POINTS, POINTS, CHECKS)
    assert all(test["visibility"] == "visible" for test in data["tests"])  # and so the total
    assert f"TOTAL {POINTS:g}/{POINTS:g}" in log  # stdout: the instructor's table


@pytest.mark.slow
def test_an_untouched_exercise_scores_zero(graded: dict[str, Any]) -> None:
    data, _, _ = graded["exercise"]
    assert_follows_the_specification(data)
    assert (data["score"], data["max_score"], len(data["tests"])) == (0, POINTS, CHECKS)
    assert all("not done yet" in test["output"] for test in data["tests"])


@pytest.mark.slow
def test_a_misnamed_notebook_scores_zero_with_the_name_to_use(graded: dict[str, Any]) -> None:
    data, _, _ = graded["misnamed"]
    assert_follows_the_specification(data)
    assert (data["score"], data["max_score"], len(data["tests"])) == (0, POINTS, CHECKS)
    assert all(f"{NOTEBOOK}.ipynb is not in your submission" in t["output"] for t in data["tests"])
    assert f"rename it to {NOTEBOOK}.ipynb" in data["output"]


@pytest.mark.slow
def test_a_hostile_submission_earns_nothing_and_its_attacks_fail(graded: dict[str, Any]) -> None:
    data, log, where = graded["hostile"]
    assert_follows_the_specification(data)
    assert (data["score"], data["max_score"], len(data["tests"])) == (0, POINTS, CHECKS)
    assert all("attack failed" in test["output"] for test in data["tests"])
    assert not any("as uid 0" in test["output"] for test in data["tests"])
    assert [path.name for path in where.results.parent.iterdir()] == ["results.json"]
    assert '"tests": []' not in log
    assert "results.json was not graded" not in data["output"]  # not a notebook: not listed
    assert {f"{NOTEBOOK}::curve_fit::fit_matches_reference"} <= {t["name"] for t in data["tests"]}


@pytest.mark.slow
def test_the_zip_holds_no_solution_code_and_no_secret(bundle: Path) -> None:
    lines = set()
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            region = cell.source.partition("### BEGIN SOLUTION")[2].partition("### END SOLUTION")
            lines |= {line.strip() for line in region[0].splitlines() if len(line.strip()) > 24}
    # the exercises quote a few lines as hints: they are the students' already
    hints = "".join(path.read_text() for path in (ROOT / "exercises").glob("*.ipynb"))
    lines = {line for line in lines if line not in hints}
    texts = list(_zip_texts(zipfile.ZipFile(bundle)))
    assert lines and texts
    for name, text in texts:
        assert not [line for line in lines if line in text], name
        assert str(SECRET) not in text, name
    with zipfile.ZipFile(bundle) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        assert not any(name.startswith("solutions/") or "/solutions/" in name for name in modes)
        assert all(modes[script] & stat.S_IXUSR for script in ("setup.sh", "run_autograder"))
        assert "torch==" in archive.read("requirements.txt").decode()


def _zip_texts(archive: zipfile.ZipFile) -> Any:
    """Every member's text, wheels opened too."""
    for info in archive.infolist():
        data = archive.read(info)
        if info.filename.endswith(".whl"):
            yield from _zip_texts(zipfile.ZipFile(io.BytesIO(data)))
        else:
            yield info.filename, data.decode("utf-8", errors="replace")


@pytest.mark.slow
def test_setup_checks_the_install_without_installing(bundle: Path, tmp_path: Path) -> None:
    where = layout(bundle, tmp_path / "autograder", {})
    environment = {**os.environ, "GRADER_AUTOGRADER_PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(where.source / "setup.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "torch 2.13.0" in done.stdout and "kernels" in done.stdout


@pytest.fixture
def limits_only(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This machine as a container that allows no sandbox (the grader still root)."""
    monkeypatch.setattr(isolation, "_zygote_problem", lambda: "not in this container")
    without = Isolation(False, "not sandboxed: bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(isolation, "_detect_bubblewrap", lambda: without)
    isolation.detect_isolation.cache_clear()
    yield
    isolation.detect_isolation.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="Gradescope runs the autograder as root")
def test_without_a_sandbox_kernels_run_unprivileged(
    bundle: Path, tmp_path: Path, limits_only: None, capsys: pytest.CaptureFixture[str]
) -> None:
    where = layout(bundle, tmp_path / "autograder", {})
    nb = solution(NOTEBOOK)
    curve = cell_of(nb, "curve_fit")
    curve.source = reading(where) + writing(where) + curve.source
    # passes on the notebook's own data only, and says something else on the hidden variant
    parabola = cell_of(nb, "parabola_descent")
    parabola.source = (
        "if parabola != [3.0, 2.0, -1.2]:\n"
        "    raise ValueError('hidden parabola ' + str(parabola))\n" + parabola.source
    )
    nbformat.write(nb, where.submission / f"{NOTEBOOK}.ipynb")
    assert run_autograder(where.root) == 0
    data = json.loads(where.results.read_text())
    assert_follows_the_specification(data)
    tests = {test["name"].split("::", 1)[1]: test for test in data["tests"]}
    assert data["score"] == 0 and "each kernel runs as an unprivileged uid" in data["output"]
    for check in ("curve_fit::fit_matches_reference", "curve_fit::fit_beats_the_initial_guess"):
        assert "attack failed: PermissionError as uid" in tests[check]["output"]
        assert "as uid 0" not in tests[check]["output"]
    hidden = tests["parabola_descent::descent_path_matches_reference"]["output"]
    assert "not on the hidden variant" in hidden and "its cell raised an error there" in hidden
    assert "hidden parabola" not in json.dumps(data)
    assert "hidden parabola" in capsys.readouterr().out  # the instructor's log: stdout
    assert [path.name for path in where.results.parent.iterdir()] == ["results.json"]


@pytest.mark.slow
def test_an_autograder_that_cannot_grade_says_so_in_results(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = layout(bundle, tmp_path / "autograder", {f"{NOTEBOOK}.ipynb": solution(NOTEBOOK)})
    for entry in (where.course / "references" / NOTEBOOK).iterdir():
        entry.unlink()  # as if the zip were built by another grader: none fits
    assert run_autograder(where.root) == 2
    data = json.loads(where.results.read_text())
    assert_follows_the_specification(data)
    assert data["score"] == 0 and data["tests"] == []
    assert "problem of the course's autograder, not of your work" in data["output"]
    assert "reference results" in capsys.readouterr().out


def test_lock_down_leaves_kernels_nothing_to_read_or_write(tmp_path: Path) -> None:
    where = Layout(tmp_path / "autograder")
    for folder in (where.source / "course", where.submission, where.results.parent):
        folder.mkdir(parents=True)
        folder.chmod(0o777)
    where.metadata.write_text("{}")
    where.results.write_text('{"score": 100}')  # left before grading: never taken as ours
    lock_down(where)
    modes = {path: path.stat().st_mode & 0o777 for path in (where.source, where.submission)}
    assert set(modes.values()) == {0o700}
    assert where.metadata.stat().st_mode & 0o777 == 0o600
    assert where.results.parent.stat().st_mode & 0o777 == 0o755
    assert not where.results.exists()


def test_notebooks_are_found_by_name_and_links_are_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "submission"
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "01_a.ipynb").write_text("{}")
    (folder / "deep" / "01_a.ipynb").write_text("{}")
    (folder / "02_b.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    (folder / "03_c-Copy1.ipynb").write_text("{}")
    (folder / ".git").mkdir()
    (folder / ".git" / "04_d.ipynb").write_text("{}")
    found = find_submitted(folder, ["01_a", "02_b", "03_c", "04_d"])
    assert found.found == {"01_a": folder / "deep" / "01_a.ipynb"}
    assert "link or not a regular file" in found.missing["02_b"]
    assert set(found.missing) == {"02_b", "03_c", "04_d"}
    notes = "\n".join(found.notes)
    assert "graded deep/01_a.ipynb, not deep/er/01_a.ipynb" in notes
    assert "rename it to 03_c.ipynb" in notes


def test_an_unknown_notebook_name_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--course", str(ROOT), "gradescope", str(tmp_path / "a.zip"), "99_nothing"])
    error = capsys.readouterr().err
    assert status == 2 and error.startswith("grader: error: no exercise called 99_nothing")
    assert error.count("\n") == 1 and not (tmp_path / "a.zip").exists()


def test_a_folder_for_the_zip_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--course", str(ROOT), "gradescope", str(tmp_path), NOTEBOOK])
    error = capsys.readouterr().err
    assert (
        status == 2
        and error
        == f"grader: error: cannot write {tmp_path}: it is a folder; name the zip to write\n"
    )
