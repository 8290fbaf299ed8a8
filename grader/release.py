"""`grader release KIT`: the folder students get, to check their work without the answers.

A kit holds the exercise notebooks (a copy to fill in, `notebooks/`, and the pristine one the
grader merges TO DO cells into), the checks modules, the reference results of the public
variant precomputed for each device (`grader.precomputed`), a wheel of this grader and the
requirement file that pins it and torch, a `pyproject.toml` whose `[tool.grader]` says it is a
kit, a README for students and a GitHub Actions workflow that runs the public checks on push.
Nothing of a solution is written: the notebooks are the exercises `grader assign` made
(solution regions replaced, outputs cleared), with only the metadata the grader reads kept; the
reference results are values, not code; there is no hidden seed and no hidden variant's data.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import distributions, version
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from nbformat import NotebookNode

import grader
from grader.assign import assign
from grader.config import Config
from grader.course import Exercise, find_exercises, load_check_spec
from grader.errors import CourseError, GraderError
from grader.execute import run_notebook
from grader.notebook import read_course_notebook
from grader.precomputed import save_reference
from grader.prepare import public_variant
from grader.references import (
    GRADER_VERSION,
    ReferenceRequest,
    RunNotebook,
    questions,
    reference_executed,
)
from grader.runner import ExecutedNotebook

DISTRIBUTION = "autodiff-grader"
KIT_COURSE = "course"  # the kit's own folder of pristine exercises, checks and references
NOTEBOOKS = "notebooks"
KEPT_CELL_METADATA = ("nbgrader", "tags")  # what the grader reads of a cell; the rest is dropped
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
STUDENT_WORKFLOW = ".github/workflows/check.yml"  # the public checks on every push
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same grader gives the same wheel


@dataclass(frozen=True)
class Kit:
    """A written kit: where it is, its exercises and the devices its references are for."""

    root: Path
    exercises: tuple[str, ...]
    devices: tuple[str, ...]
    wheel: Path


def release(config: Config, out: Path) -> Kit:
    """Write the student kit of the course `config` describes into the new folder `out`.

    The public variant's references are computed for the cpu, and for cuda where
    `config.device` asks for it (`cuda`, or `auto` on a machine that has one). The folder is
    written beside `out` and moved there when complete, so a failed release leaves nothing.
    """
    if out.exists():
        raise GraderError(f"{out} already exists: remove it or name a new folder for the kit")
    exercises = current_exercises(config)
    devices = _release_devices(config.device)
    partial = _new_folder(out.with_name(f".{out.name}.partial-{os.getpid()}"))
    with _removed_on_failure(partial):
        for exercise in exercises.values():
            _write_exercise(exercise, partial)
        _write_references(config, exercises, devices, partial / KIT_COURSE / "references")
        wheel = write_wheel(partial / "wheels")
        workflow = (PACKAGE_TEMPLATES / "kit" / "check.yml").read_text(encoding="utf-8")
        _write_text(partial / STUDENT_WORKFLOW, workflow)
        _write_text(partial / "pyproject.toml", _render("kit/pyproject.toml.j2", devices=devices))
        requirements = _render("kit/requirements.txt.j2", wheel=wheel.name, **_pins())
        _write_text(partial / "requirements.txt", requirements)
        _write_text(
            partial / "README.md",
            _render("kit/README.md.j2", exercises=sorted(exercises), devices=devices, **_pins()),
        )
        partial.rename(out)
    return Kit(out, tuple(sorted(exercises)), devices, out / "wheels" / wheel.name)


def current_exercises(config: Config) -> dict[str, Exercise]:
    """The course's exercises, refusing a release whose exercises/ is behind its solutions."""
    exercises = find_exercises(config)
    if not exercises:
        raise CourseError(f"no solution notebooks in {config.path(config.solutions_dir)}")
    stale = assign(config, check_only=True)
    if stale:
        raise CourseError(
            f"{stale[0]} is out of date with its solution: run `grader assign` before releasing"
        )
    return exercises


def _release_devices(requested: str) -> tuple[str, ...]:
    from grader.grading import resolve_device

    return ("cpu",) if resolve_device(requested) == "cpu" else ("cpu", "cuda")


def _new_folder(folder: Path) -> Path:
    """`folder`, made (with its parents) before any reference runs, or one line saying why not."""
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        raise GraderError(
            f"cannot write the kit into {folder.parent}: {error.strerror or error}"
        ) from None
    return folder


@contextlib.contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a kit we wrote ourselves: plain files only
        raise


def _write_exercise(exercise: Exercise, kit: Path) -> None:
    """The exercise notebook twice (the student's copy and the grader's pristine one) and its
    checks module."""
    text = nbformat.writes(scrubbed(read_course_notebook(exercise.exercise_path))) + "\n"
    for folder in (kit / NOTEBOOKS, kit / KIT_COURSE / "exercises"):
        _write_text(folder / f"{exercise.name}.ipynb", text)
    checks = kit / KIT_COURSE / "checks" / exercise.checks_path.name
    checks.parent.mkdir(parents=True, exist_ok=True)
    checks.write_bytes(exercise.checks_path.read_bytes())


def scrubbed(nb: NotebookNode) -> NotebookNode:
    """`nb` with only the metadata the grader reads, and no outputs."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEPT_NOTEBOOK_METADATA}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA}
        cell.pop("attachments", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def _write_references(
    config: Config, exercises: dict[str, Exercise], devices: tuple[str, ...], store: Path
) -> None:
    """The public variant's reference record of every exercise on every device, into `store`."""
    from grader.engine.client import start_zygote
    from grader.grading import execution_limits
    from grader.pool import KernelPool

    limits = execution_limits(config)
    cache_dir = config.path(config.cache_dir)
    with start_zygote() as zygote, KernelPool(limits.resources, zygote=zygote) as pool:

        def run(nb: NotebookNode, probes: list[str]) -> ExecutedNotebook:
            return run_notebook(nb, probes, limits, pool)

        for device in devices:
            for exercise in exercises.values():
                _store_public_reference(exercise, device, cache_dir, run, store)


def _store_public_reference(
    exercise: Exercise,
    device: str,
    cache_dir: Path,
    run: RunNotebook,
    store: Path,
) -> None:
    pristine = read_course_notebook(exercise.exercise_path)
    variant = public_variant(pristine, exercise.name, device)
    asked = questions(load_check_spec(exercise), variant)
    solution = read_course_notebook(exercise.solution_path)
    request = ReferenceRequest(exercise, solution, variant, asked)
    save_reference(
        store, exercise.name, variant, asked, reference_executed(request, cache_dir, run)
    )


def write_wheel(folder: Path) -> Path:
    """A wheel of the running grader, built from its installed files, into `folder`.

    The grader is not on PyPI: a kit carries it. The wheel holds the package's files (never
    bytecode) and the installed distribution's metadata and entry points.
    """
    metadata, entry_points = _installed_metadata()
    package = Path(grader.__file__).parent
    info = f"autodiff_grader-{GRADER_VERSION}.dist-info"
    files: dict[str, bytes] = {
        f"grader/{path.relative_to(package).as_posix()}": path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and _package_file(path.relative_to(package))
    }
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/entry_points.txt"] = entry_points.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: grader release\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"autodiff_grader-{GRADER_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data, zipfile.ZIP_DEFLATED)
    return wheel


def _package_file(relative: Path) -> bool:
    """Whether a file under the package is part of it: no bytecode, and nothing hidden (a stray
    cache or secret folder is no package file)."""
    hidden = any(part == "__pycache__" or part.startswith(".") for part in relative.parts)
    return not hidden and relative.suffix != ".pyc"


def _installed_metadata() -> tuple[str, str]:
    """The running grader's core metadata and entry points: an installed `.dist-info`'s, else a
    source tree's `.egg-info` (whose PKG-INFO has the same format)."""
    for dist in sorted(
        distributions(name=DISTRIBUTION), key=lambda d: d.read_text("METADATA") is None
    ):
        metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
        if metadata and dist.version == GRADER_VERSION:
            return metadata, dist.read_text("entry_points.txt") or ""
    raise GraderError(
        f"the metadata of {DISTRIBUTION} {GRADER_VERSION} is not installed: reinstall it"
    )


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _pins() -> dict[str, str]:
    """The versions a kit pins: this grader's, and torch's release (without a local `+cu121`)."""
    return {"grader_version": GRADER_VERSION, "torch_version": version("torch").split("+")[0]}


def _render(template: str, **values: Any) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("grader", "templates"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown and TOML, from the course's own names
    )
    return environment.get_template(template).render(
        notebooks=NOTEBOOKS, kit_course=KIT_COURSE, distribution=DISTRIBUTION, **values
    )


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
