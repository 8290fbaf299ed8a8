"""Student kits: the precomputed reference store, `grader release` and checking inside a kit."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from grader.assign import BEGIN, END
from grader.cli import KIT_NOTE, main
from grader.config import Config, load_config
from grader.course import CheckSpec
from grader.errors import CourseError, GraderError, PrecomputedMismatchError
from grader.extract import CellOutcome
from grader.precomputed import load_reference, save_reference, stored_keys
from grader.prepare import Variant
from grader.references import Questions, collect_executed, questions
from grader.release import KIT_COURSE, Kit, release
from grader.runner import ExecutedNotebook, ProbeOutcome
from tests.conftest import ROOT, mini_solution, write

SPEC = CheckSpec(values=("answer",), calls=None, hidden_parameters=None)
PUBLIC = Variant("the notebook's own data", {"seed": 0, "device": "cpu", "scale": 2.0}, 7)
RECORD = ExecutedNotebook(
    (CellOutcome("first", "ok"),),
    (ProbeOutcome('{"answer": {"type": "float", "value": 42.0}}'),),
    1.0,
    "bubblewrap",
)


def _asked(variant: Variant = PUBLIC) -> Questions:
    return questions(SPEC, variant)


def test_a_stored_record_is_found_by_what_a_kit_can_compute(tmp_path: Path) -> None:
    save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    found = load_reference(tmp_path, "01_mini", PUBLIC, _asked())
    assert found == collect_executed(PUBLIC, RECORD, _asked())
    assert stored_keys(tmp_path, "01_mini")[0][0].device == "cpu"


def _other_probes(variant: Variant) -> Questions:
    asked = _asked(variant)
    return dataclasses.replace(asked, probes=[*asked.probes, "pass"])


MISMATCHES = [
    # (what differs from the stored record, the fragment of the one-line error)
    ("exercise", "have none for 02_mini: get the kit again"),
    ("grader_version", "were made by autodiff-grader 0.0.1, this is"),
    ("device", "are for cpu, not cuda: run `grader check --device cpu`"),
    ("probes", "another version of 01_mini's checks module or exercise notebook"),
    ("parameters", "another version of 01_mini's checks module or exercise notebook"),
]


@pytest.mark.parametrize(("differs", "message"), MISMATCHES)
def test_a_record_that_does_not_fit_is_an_error_saying_what_to_do(
    tmp_path: Path, differs: str, message: str
) -> None:
    path = save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    if differs == "grader_version":  # a kit released by another grader
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry["key"]["grader_version"] = "0.0.1"
        path.write_text(json.dumps(entry), encoding="utf-8")
    variant, asked, name = PUBLIC, _asked(), "01_mini"
    if differs == "exercise":
        name = "02_mini"
    elif differs == "device":
        variant = dataclasses.replace(PUBLIC, parameters={**PUBLIC.parameters, "device": "cuda"})
        asked = _asked(variant)
    elif differs == "probes":
        asked = _other_probes(PUBLIC)
    elif differs == "parameters":
        variant = dataclasses.replace(PUBLIC, parameters={**PUBLIC.parameters, "scale": 3.0})
        asked = _asked(variant)
    with pytest.raises(PrecomputedMismatchError) as raised:
        load_reference(tmp_path, name, variant, asked)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unreadable_entry_is_not_a_match(tmp_path: Path) -> None:
    path = save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    path.write_text(json.dumps({"key": {}, "record": RECORD.to_json()}), encoding="utf-8")
    with pytest.raises(PrecomputedMismatchError, match="have none for 01_mini"):
        load_reference(tmp_path, "01_mini", PUBLIC, _asked())


# ----------------------------------------------------------------------------- a released kit


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, reference_cache: Path) -> Kit:
    """The bundled course's kit, released once (its public references from the shared cache)."""
    config = dataclasses.replace(load_config(ROOT), cache_dir=str(reference_cache), device="cpu")
    return release(config, tmp_path_factory.mktemp("release") / "kit")


def _solution_lines() -> set[str]:
    """Every line of every solution region that the published course does not already show
    (a region's `loss.backward()` is also in the exercise's text and the checks)."""
    published = "\n".join(
        [
            *(cell.source for p in (ROOT / "exercises").glob("*.ipynb") for cell in _cells(p)),
            *(path.read_text(encoding="utf-8") for path in (ROOT / "checks").glob("*.py")),
            *(path.read_text(encoding="utf-8") for path in (ROOT / "grader").rglob("*.py")),
        ]
    )
    lines = set()
    for path in (ROOT / "solutions").glob("*.ipynb"):
        for cell in _cells(path):
            inside = False
            for line in cell.source.splitlines():
                marker = line.strip()
                if marker in (BEGIN, END):
                    inside = marker == BEGIN
                elif inside and marker and marker not in published:
                    lines.add(marker)
    return lines


def _cells(path: Path) -> list[Any]:
    return list(nbformat.read(path, as_version=4).cells)


def _contents(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under `root`, and every member of every zip archive (the wheel) among them."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            yield str(path.relative_to(root)), data
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        yield f"{path.name}!{member}", archive.read(member)


def _texts(data: bytes) -> list[str]:
    """The file as text, and, when it is JSON (notebooks, references), its strings unescaped."""
    text = data.decode("utf-8", errors="replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        return [text]
    return [text, "\n".join(_strings(decoded))]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.slow
def test_no_line_of_any_solution_is_anywhere_in_the_kit(kit: Kit) -> None:
    secret = _solution_lines()
    assert len(secret) > 100  # the regions' own lines, not just what the exercises show too
    contents = list(_contents(kit.root))
    assert any(name.endswith("grader/release.py") for name, _ in contents)  # the wheel was read
    for name, data in contents:
        assert not name.endswith((".pyc", ".pyo")) and "__pycache__" not in name, name
        assert "solutions" not in name and ".grader-secret" not in name, name
        texts = _texts(data)
        leaked = [line for line in secret if line.encode() in data or any(line in t for t in texts)]
        assert not leaked, f"{name} holds solution lines: {leaked[:3]}"
    store = kit.root / KIT_COURSE / "references"
    stored = [key for name in kit.exercises for key in stored_keys(store, name)]
    assert len(stored) == len(kit.exercises) and not any(hidden for _, hidden in stored)
    assert {key.device for key, _ in stored} == {"cpu"}


def _fresh_grader(tmp_path: Path, kit: Path) -> Path:
    """A new virtual environment, given this suite's third-party packages (hard links: no index
    here) but not its grader, then `pip install -r requirements.txt` of the kit; its python."""
    requirements = (kit / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert f"torch=={version('torch').split('+')[0]}" in requirements
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, check=True)
    python = venv / "bin" / "python"
    ours = Path(next(p for p in sys.path if p.endswith("site-packages")))
    site = next(venv.glob("lib/python*/site-packages"))
    try:
        for entry in ours.iterdir():
            if entry.name.startswith(("__editable__", "autodiff_grader")) or entry.suffix == ".pth":
                continue  # the source tree's grader, and what would put it on the path
            if entry.is_dir():
                shutil.copytree(entry, site / entry.name, copy_function=os.link, symlinks=True)
            else:
                os.link(entry, site / entry.name)
    except OSError as error:  # another filesystem: 1.4 GB is not copied for a test
        pytest.skip(f"cannot hard-link the suite's packages into {tmp_path}: {error}")
    install = ["install", "--quiet", "--no-index", "-r", str(kit / "requirements.txt")]
    pip = [sys.executable, "-m", "pip", "--python", str(python), *install]
    subprocess.run(pip, cwd=kit, check=True)  # in the kit, as its README says
    (installed,) = site.glob("autodiff_grader-*.dist-info")
    origin = json.loads((installed / "direct_url.json").read_text(encoding="utf-8"))
    assert origin["url"] == (kit / "wheels" / wheel_name(kit)).as_uri()  # by path: no index
    return python


def wheel_name(kit: Path) -> str:
    (wheel,) = (kit / "wheels").glob("*.whl")
    return wheel.name


def _without_the_course() -> dict[str, str]:
    skipped = {"GRADER_HIDDEN_SEED", "GRADER_COURSE", "PYTHONPATH", "VIRTUAL_ENV"}
    return {key: value for key, value in os.environ.items() if key not in skipped}


@pytest.mark.slow
def test_a_fresh_install_of_the_kit_grades_without_the_course(kit: Kit, tmp_path: Path) -> None:
    copy = shutil.copytree(kit.root, tmp_path / "elsewhere" / "kit")
    handed = tmp_path / "handed"
    handed.mkdir()
    shutil.copy(ROOT / "solutions" / "01_autograd_basics.ipynb", handed)
    python = _fresh_grader(tmp_path, copy)
    environ = _without_the_course()
    where = subprocess.run(
        [python, "-c", "import grader; print(grader.__file__)"],
        cwd=copy,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(tmp_path / "fresh"))
    graded = subprocess.run(
        [
            python,
            "-m",
            "grader",
            "check",
            "notebooks/01_autograd_basics.ipynb",
            handed / "01_autograd_basics.ipynb",
        ],
        cwd=copy,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert graded.returncode == 1, graded.stderr
    note, exercise, solution, total = graded.stdout.split("\n\n")
    assert note == f"note: {KIT_NOTE}"
    assert "(notebooks/01_autograd_basics.ipynb)" in exercise and "score 0/6" in exercise
    assert "handed" in solution and "score 6/6" in solution and "[FAIL]" not in solution
    assert total.startswith("TOTAL 6/12")
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in kit.root.iterdir())


@pytest.mark.slow
def test_a_kit_made_by_another_grader_says_what_to_install(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = shutil.copytree(kit.root, tmp_path / "kit")
    for entry in (copy / KIT_COURSE / "references").rglob("*.json"):
        stored = json.loads(entry.read_text(encoding="utf-8"))
        stored["key"]["grader_version"] = "0.0.1"
        entry.write_text(json.dumps(stored), encoding="utf-8")
    notebook = copy / "notebooks" / "01_autograd_basics.ipynb"
    assert main(["--course", str(copy), "check", str(notebook)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "made by autodiff-grader 0.0.1" in error
    assert "`pip install -r requirements.txt` in the kit" in error


def test_a_release_needs_current_exercises_and_a_new_folder(
    mini_course: Config, tmp_path: Path
) -> None:
    with pytest.raises(GraderError, match="already exists"):
        release(mini_course, tmp_path)
    stale = shutil.copytree(mini_course.root, tmp_path / "course")
    (stale / "exercises" / "01_mini.ipynb").write_text("{}", encoding="utf-8")
    with pytest.raises(CourseError, match="out of date with its solution: run `grader assign`"):
        release(dataclasses.replace(mini_course, root=stale), tmp_path / "kit")
    assert not (tmp_path / "kit").exists()
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("", encoding="utf-8")
    with pytest.raises(GraderError, match=f"cannot write the kit into {in_the_way}: "):
        release(mini_course, in_the_way / "kit")


# ----------------------------------------------------------------------------- the CI recipes


def _readme_workflow(first_line: str) -> tuple[str, dict[str, Any]]:
    """The README's YAML block that starts with `first_line`: its text, and its steps parsed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [
        b
        for b in re.findall(r"^```yaml\n(.*?)^```$", text, re.S | re.M)
        if b.startswith(first_line)
    ]
    return block, yaml.safe_load(block)


def _run_steps(
    workflow: dict[str, Any], cwd: Path, environ: dict[str, str], skip: str = "pip install"
) -> None:
    """Run the workflow's `run:` steps in `cwd` as GitHub runs them (bash -e -o pipefail), with
    this suite's grader on the PATH instead of the steps that install one."""
    (job,) = workflow["jobs"].values()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for step in job["steps"]:
        if "run" in step and skip not in step["run"]:
            env = {**environ, **step.get("env", {}), "PATH": path}
            shell = ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]]
            done = subprocess.run(shell, cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{step.get('name')}: {done.stdout}{done.stderr}"


STUDENT_WORKFLOW = "# .github/workflows/check.yml in a student's repository"
CLASS_WORKFLOW = "# .github/workflows/grade-class.yml in the instructor's private course"


def test_the_readme_shows_the_workflow_a_kit_carries() -> None:
    shown, _ = _readme_workflow(STUDENT_WORKFLOW)
    assert shown == (ROOT / "grader" / "templates" / "kit" / "check.yml").read_text()


@pytest.fixture(scope="module")
def mini_kit(mini_course: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini course's kit, its first notebook filled in with the solution, the second not."""
    kit = release(mini_course, tmp_path_factory.mktemp("mini-release") / "kit").root
    write(mini_solution(), kit / "notebooks", "01_mini")
    return kit


@pytest.mark.slow
def test_a_student_repository_runs_the_public_checks(mini_kit: Path, tmp_path: Path) -> None:
    repository = shutil.copytree(mini_kit, tmp_path / "repository")
    workflow = yaml.safe_load((repository / ".github" / "workflows" / "check.yml").read_text())
    summary = tmp_path / "summary.md"
    environ = {k: v for k, v in os.environ.items() if k not in ("GRADER_HIDDEN_SEED",)}
    _run_steps(workflow, repository, {**environ, "GITHUB_STEP_SUMMARY": str(summary)})
    shown = summary.read_text(encoding="utf-8")
    assert f"note: {KIT_NOTE}" in shown and "TOTAL 2/4 points in 2 notebook(s)" in shown
    results = json.loads((repository / "results.json").read_text(encoding="utf-8"))
    assert (results["score"], results["max_score"]) == (2, 4)
    assert not (repository / ".grader-secret").exists()


@pytest.mark.slow
def test_the_instructor_grades_every_student_repository_with_the_hidden_variant(
    mini_course: Config, mini_kit: Path, tmp_path: Path
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    for part in ("pyproject.toml", "solutions", "exercises", "checks"):
        copy = shutil.copytree if (mini_course.root / part).is_dir() else shutil.copy
        copy(mini_course.root / part, course / part)
    students = []
    for student, notebook in (("alice", mini_solution()), ("bob", None)):
        repository = shutil.copytree(mini_kit, tmp_path / "github" / student)
        (repository / "notebooks" / "02_mini.ipynb").unlink()  # one notebook each: lean
        if notebook is None:  # bob handed in the kit's exercise untouched
            shutil.copy(
                mini_kit / "course" / "exercises" / "01_mini.ipynb", repository / "notebooks"
            )
        git = ["git", "-C", str(repository), "-c", "user.name=s", "-c", "user.email=s@example.org"]
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "work"]):
            subprocess.run([*git, *command], check=True)
        students.append(f"{student} {repository}")
    (course / "class").mkdir()
    (course / "class" / "students.txt").write_text("\n".join(students) + "\n")
    _, workflow = _readme_workflow(CLASS_WORKFLOW)
    secrets = {"GRADER_HIDDEN_SEED": "1729", "CLASS_READ_TOKEN": "token"}
    environ = {k: v for k, v in os.environ.items() if k != "GRADER_COURSE"}
    for step in workflow["jobs"]["grade"]["steps"]:  # the secrets, as GitHub fills them in
        step["env"] = {k: secrets.get(k, v) for k, v in step.get("env", {}).items()}
    _run_steps(workflow, course, environ)
    assert not (course / "submissions" / "alice" / "course").exists()
    table = (course / "grades" / "grades.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(table.splitlines()))
    assert {row["student"]: float(row["total"]) for row in rows} == {"alice": 2.0, "bob": 0.0}
    official = json.loads((course / "grades" / "results" / "alice" / "results.json").read_text())
    assert official["score"] == 2
