"""Gradescope: build an autograder zip (`grader gradescope OUT.zip`), and grade one submission
inside Gradescope's container (`run_autograder`, which calls `python -m grader.gradescope`).

The zip holds `setup.sh` and `run_autograder` (Gradescope's two entry points), a wheel of this
grader, the versions its references were made with (`requirements.txt`), and a course folder
of exercises, checks modules, the planned variants of each exercise (its own data and the
hidden variant, drawn from the secret where the zip is built) and the reference results of
both (`grader.precomputed`). It holds no solution notebook and no secret.

In the container everything runs as root, the student's kernel included unless the grader
confines it: before grading, `run_autograder` makes the course (`source/`) and the submission
readable by root only and the results folder writable by root only, and every kernel runs
under an unprivileged uid of its own (forked from the zygote, or started through `setpriv`
where no sandbox can be made), so no kernel can read the references or write the results.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import requires, version
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from packaging.requirements import Requirement

import grader
from grader.config import Config, load_config
from grader.course import Exercise
from grader.errors import CourseError, GraderError
from grader.notebook import read_course_notebook
from grader.results import NotebookResult
from grader.untrusted import clean_text, display_name

ROOT_ENV = "GRADER_AUTOGRADER_ROOT"
"""Where `run_autograder` finds Gradescope's layout (default `/autograder`; tests set it)."""
PYTHON_ENV = "GRADER_AUTOGRADER_PYTHON"
"""The Python that `setup.sh` installs into and `run_autograder` runs; set, nothing is installed."""
DEFAULT_ROOT = Path("/autograder")
DEVICE = "cpu"  # Gradescope's containers have no GPU
SCRIPTS = {"setup.sh": "gradescope-setup.sh", "run_autograder": "gradescope-run_autograder"}
COURSE = "course"  # the course folder inside the zip (/autograder/source/course)
VARIANTS_FILE = "variants.json"
REFERENCES_DIR = "references"
# The instructor's settings that a bundle keeps: how the student's runs are limited.
KEPT_SETTINGS = (
    "cell_timeout",
    "notebook_timeout",
    "memory_limit_mb",
    "process_limit",
    "output_limit_kb",
)
MAX_SUBMITTED_ENTRIES = 10_000  # files and folders looked at in a submission
MAX_SUBMITTED_DEPTH = 8
MAX_IGNORED_NOTES = 20
"""Notebooks named after no exercise that get a note each (a folder of junk gets one line more,
not a results.json of megabytes)."""
SKIPPED_FOLDERS = frozenset({".git", "__MACOSX", ".ipynb_checkpoints"})
PRIVATE, SHARED_READ = 0o700, 0o755


# ---- Building the zip, where the instructor grades (solutions and secret at hand). ----


def build_autograder(config: Config, out: Path, notebooks: Sequence[str] = ()) -> list[str]:
    """Write the Gradescope autograder zip of the course's exercises `notebooks` (default: all)
    to `out`; the exercises it grades.

    `config` must hold the hidden variant's secret. The references of both variants are
    computed on the CPU (from the reference cache where it has them).
    """
    from grader.release import current_exercises, write_wheel

    if out.is_dir():  # said before the references are run, not after
        raise GraderError(f"cannot write {out}: it is a folder; name the zip to write")
    exercises = current_exercises(config)
    chosen = list(notebooks) or sorted(exercises)
    unknown = [name for name in chosen if name not in exercises]
    if unknown:
        raise GraderError(
            f"no exercise called {', '.join(unknown)}; the course has {', '.join(exercises)}"
        )
    with tempfile.TemporaryDirectory(prefix="grader-gradescope-") as staging:
        bundle = Path(staging)
        course = bundle / COURSE
        _precompute(config, [exercises[name] for name in chosen], course)
        _copy_course_files(config, chosen, course)
        write_wheel(bundle / "wheels")
        _write_requirements(bundle / "requirements.txt")
        for name, template in SCRIPTS.items():
            shutil.copyfile(Path(grader.__file__).parent / "templates" / template, bundle / name)
        _write_zip(bundle, out)
    return chosen


def _precompute(config: Config, chosen: list[Exercise], course: Path) -> None:
    """Plan both variants of each exercise on the CPU and file their reference results."""
    from grader.config import hidden_secret
    from grader.course import load_check_spec
    from grader.execute import run_notebook
    from grader.grading import execution_limits
    from grader.pool import KernelPool
    from grader.precomputed import save_reference, save_variants
    from grader.prepare import variants
    from grader.references import ReferenceRequest, questions, reference_executed
    from grader.runner import ExecutedNotebook

    secret, limits = hidden_secret(config), execution_limits(config)
    planned = {}
    with KernelPool(limits.resources, limits.threads) as pool:

        def run(nb: NotebookNode, probes: list[str]) -> ExecutedNotebook:
            return run_notebook(nb, probes, limits, pool)

        for exercise in chosen:
            pristine = read_course_notebook(exercise.exercise_path)
            solution = read_course_notebook(exercise.solution_path)
            spec = load_check_spec(exercise)
            planned[exercise.name] = variants(pristine, exercise.name, spec, DEVICE, secret)
            for variant in planned[exercise.name]:
                asked = questions(spec, variant)
                request = ReferenceRequest(exercise, solution, variant, asked)
                executed = reference_executed(request, config.path(config.cache_dir), run)
                save_reference(course / REFERENCES_DIR, exercise.name, variant, asked, executed)
    save_variants(course / VARIANTS_FILE, planned)


def _copy_course_files(config: Config, chosen: list[str], course: Path) -> None:
    """The exercises and checks modules of `chosen`, and a pyproject.toml that names them."""
    from grader.release import scrubbed

    for folder in ("exercises", "checks"):
        (course / folder).mkdir(parents=True)
    for name in chosen:
        exercise = read_course_notebook(config.path(config.exercises_dir) / f"{name}.ipynb")
        nbformat.write(scrubbed(exercise), course / "exercises" / f"{name}.ipynb")
        checks = config.path(config.checks_dir) / f"{name}.py"
        shutil.copyfile(checks, course / "checks" / checks.name)
    settings = {
        "kit": True,
        "exercises_dir": "exercises",
        "checks_dir": "checks",
        "references_dir": REFERENCES_DIR,
        "variants_file": VARIANTS_FILE,
        "device": DEVICE,
        **{key: getattr(config, key) for key in KEPT_SETTINGS},
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    text = "# A Gradescope autograder bundle, written by `grader gradescope`.\n[tool.grader]\n"
    (course / "pyproject.toml").write_text(text + "\n".join(lines) + "\n", encoding="utf-8")


def _write_requirements(path: Path) -> None:
    """The grader's dependencies pinned to the versions installed here, torch among them: the
    student's runs in the container then compute as the references were computed."""
    pins = []
    for line in requires("autodiff-grader") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            base = version(requirement.name).split("+")[0]  # torch's "+cpu" is the index's
            pins.append(f"{requirement.name}=={base}")
    path.write_text("\n".join(sorted(pins)) + "\n", encoding="utf-8")


def _write_zip(bundle: Path, out: Path) -> None:
    """`bundle` as a zip with its files at the root; the two scripts executable."""
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(bundle.rglob("*")):
                if path.is_file():
                    name = path.relative_to(bundle).as_posix()
                    entry = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                    mode = SHARED_READ if name in SCRIPTS else 0o644
                    entry.external_attr = (stat.S_IFREG | mode) << 16
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(entry, path.read_bytes())
        partial.replace(out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise GraderError(f"cannot write {out}: {error.strerror or error}") from None


# ---- Grading one submission, inside Gradescope's container. ----


@dataclass(frozen=True)
class Layout:
    """Gradescope's `/autograder`, or a folder laid out like it."""

    root: Path

    @property
    def source(self) -> Path:
        """The zip's contents."""
        return self.root / "source"

    @property
    def course(self) -> Path:
        return self.source / COURSE

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def metadata(self) -> Path:
        """Gradescope's submission_metadata.json: the students' names, their earlier results."""
        return self.root / "submission_metadata.json"

    @property
    def results(self) -> Path:
        return self.root / "results" / "results.json"


@dataclass(frozen=True)
class Submitted:
    """The notebooks found in a submission, by exercise, and what to tell the student."""

    found: dict[str, Path]
    missing: dict[str, str]
    """Why each exercise not in `found` was not graded, for the student."""
    notes: tuple[str, ...] = ()


def run_autograder(root: Path) -> int:
    """Grade the submission under `root` (Gradescope's layout) into its results.json.

    A submission never makes it fail: a missing or misnamed notebook scores 0 with the reason.
    A grader or course problem is reported in results.json too (score 0, saying it is the
    autograder's fault) and on stdout, which only the instructor sees; the status is then 2.
    """
    started = time.monotonic()
    layout = Layout(root)
    status = 0
    try:
        lock_down(layout)
        data, log = grade_submission(layout, started)
    except GraderError as error:
        data, log, status = _autograder_failed(str(error), started), str(error), 2
    except Exception as error:  # a bug of the grader's: still a results.json, and the traceback
        log = "".join(traceback.format_exception(error))
        data, status = _autograder_failed(f"internal error: {error!r}", started), 2
    from grader.export import write_json_atomically

    write_json_atomically(layout.results, data)
    print(log, flush=True)
    return status


def lock_down(layout: Layout) -> None:
    """Make what a kernel must not read root's only, and the results folder root's to write.

    Kernels run under uids of their own (`grader.engine.jail`), so modes decide what they reach
    wherever no sandbox hides the file system from them.
    """
    for folder in (layout.source, layout.submission):
        _set_mode(folder, PRIVATE)
    _set_mode(layout.metadata, 0o600)
    results = layout.results.parent
    results.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(results, 0, 0, follow_symlinks=False)
    _set_mode(results, SHARED_READ)
    layout.results.unlink(missing_ok=True)  # a results.json from before was not written here


def _set_mode(path: Path, mode: int) -> None:
    if path.exists() and not path.is_symlink():  # Gradescope's own paths: never links
        os.chmod(path, mode)


def grade_submission(layout: Layout, started: float) -> tuple[dict[str, Any], str]:
    """The results.json of the submission, and the instructor's log (stdout)."""
    from grader.course import find_exercises
    from grader.grading import Job, grade_jobs
    from grader.report import gradescope_results, render_text

    config = load_config(layout.course, device=DEVICE)
    names = sorted(find_exercises(config))
    if not names:
        raise CourseError(f"{layout.course} holds no exercise: build the autograder again")
    submitted = find_submitted(layout.submission, names)
    with tempfile.TemporaryDirectory(prefix="grader-absent-") as absent:
        # A missing notebook is graded as unreadable (0, no kernel), from a path that is
        # certainly not there and not the student's, so that each of its checks is listed.
        jobs = [
            Job(submitted.found.get(name, Path(absent) / f"{name}.ipynb"), name) for name in names
        ]
        results = grade_jobs(jobs, config)
    results = [_as_submitted(result, submitted) for result in results]
    data = gradescope_results(results, time.monotonic() - started, submitted.notes)
    return data, render_text(results) + _instructor_detail(results)


def _as_submitted(result: NotebookResult, submitted: Submitted) -> NotebookResult:
    """A notebook the student did not hand in: each check says so, nothing else."""
    why = submitted.missing.get(result.notebook)
    if why is None:
        return result
    checks = tuple(dataclasses.replace(check, message=why) for check in result.checks)
    return dataclasses.replace(result, path="(not submitted)", checks=checks, notices=())


def _instructor_detail(results: list[NotebookResult]) -> str:
    """The hidden runs' own messages: on stdout, which Gradescope shows the instructor only."""
    lines = [
        f"{check.notebook}::{check.grade_id}::{check.name} on the hidden variant: "
        + clean_text(check.hidden_message)
        for result in results
        for check in result.checks
        if check.hidden_message
    ]
    return "".join(f"\n[instructor only] {line}" for line in lines) + "\n" if lines else ""


def _autograder_failed(problem: str, started: float) -> dict[str, Any]:
    from grader.report import gradescope_results

    note = (
        "The autograder could not grade this submission; this is a problem of the course's "
        f"autograder, not of your work. Tell your instructor: {problem}"
    )
    return gradescope_results([], time.monotonic() - started, (note,))


def find_submitted(folder: Path, exercises: Sequence[str]) -> Submitted:
    """The submission's notebook for each exercise, matched by file name, and the notes.

    The folder may hold the notebooks at its top or in subfolders (an uploaded zip, a
    repository). Links are never followed; where several files have an exercise's name, the
    one nearest the top is graded.
    """
    wanted = set(exercises)
    candidates: dict[str, list[Path]] = {}
    unlinked: dict[str, Path] = {}
    others: list[Path] = []
    entries = 0
    for path, is_file in _walk(folder):
        entries += 1
        if entries > MAX_SUBMITTED_ENTRIES:
            break
        if path.suffix != ".ipynb":
            continue
        if path.stem not in wanted:
            others.append(path)
        elif is_file:
            candidates.setdefault(path.stem, []).append(path)
        else:
            unlinked.setdefault(path.stem, path)
    found = {name: _nearest(paths) for name, paths in candidates.items()}
    notes = [_several(folder, name, paths, found[name]) for name, paths in candidates.items()]
    notes = [note for note in notes if note]
    if entries > MAX_SUBMITTED_ENTRIES:
        notes.append(f"only the first {MAX_SUBMITTED_ENTRIES} files of the submission were read")
    notes += [_ignored(folder, path, exercises) for path in others[:MAX_IGNORED_NOTES]]
    if len(others) > MAX_IGNORED_NOTES:
        notes.append(
            f"{len(others) - MAX_IGNORED_NOTES} more .ipynb files were not graded: no exercise "
            "has their names"
        )
    missing = {
        name: _why_missing(folder, name, unlinked.get(name))
        for name in exercises
        if name not in found
    }
    notes += list(missing.values())
    return Submitted(found, missing, tuple(notes))


def _walk(folder: Path) -> Iterator[tuple[Path, bool]]:
    """Every entry under `folder`, top first, with whether it is a regular file; links and
    their targets are entries, never followed."""
    level = [folder]
    for _ in range(MAX_SUBMITTED_DEPTH):
        deeper = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIPPED_FOLDERS:
                        deeper.append(path)
                        yield path, False
                else:
                    yield path, entry.is_file(follow_symlinks=False)
        level = deeper


def _nearest(paths: list[Path]) -> Path:
    return min(paths, key=lambda path: (len(path.parts), str(path)))


def _shown(folder: Path, path: Path) -> str:
    return display_name(path.relative_to(folder).as_posix())


def _several(folder: Path, name: str, paths: list[Path], graded: Path) -> str:
    if len(paths) == 1:
        return ""
    others = ", ".join(_shown(folder, path) for path in paths if path != graded)
    return f"several files are called {name}.ipynb: graded {_shown(folder, graded)}, not {others}"


def _ignored(folder: Path, path: Path, exercises: Sequence[str]) -> str:
    # a browser's "01_x (1)", Jupyter's "01_x-Copy1", a "01_x_final", or a typo
    close = [name for name in exercises if path.stem.startswith(name)]
    close = close or difflib.get_close_matches(path.stem, exercises, n=1, cutoff=0.6)
    hint = f" (rename it to {close[0]}.ipynb if it is that exercise)" if close else ""
    return f"{_shown(folder, path)} was not graded: no exercise has that name{hint}"


def _why_missing(folder: Path, name: str, unlinked: Path | None) -> str:
    if unlinked is not None:
        return (
            f"{_shown(folder, unlinked)} was not graded: it is a link or not a regular file; "
            f"upload the notebook itself as {name}.ipynb"
        )
    return (
        f"{name}.ipynb is not in your submission: upload your notebook under exactly this name "
        "(it scores 0 until then)"
    )


# ---- setup.sh's check of the installation, as it builds the image. ----


def self_check() -> str:
    """What `setup.sh` prints once the grader is installed: how kernels will be confined here.

    Raises GraderError where a kernel could read the references: outside any sandbox, as root
    (`setpriv` is missing) or as the grader's own user (the grader is not root, so the
    references cannot be kept from the kernel by their modes).
    """
    import torch  # the install is broken without it: fail while the image is built

    from grader.engine.isolation import can_drop_root, detect_isolation

    isolation = detect_isolation()
    if not (isolation.sandboxed or can_drop_root()):
        raise GraderError(
            f"kernels could read the references here ({isolation.description}): run the "
            "autograder as root with util-linux's setpriv installed"
        )
    installed = f"autodiff-grader {version('autodiff-grader')}, torch {torch.__version__}"
    return f"{installed}; kernels: {isolation.description}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m grader.gradescope ROOT` (run_autograder) or `--self-check` (setup.sh)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--self-check"]:
        try:
            print(self_check())
        except GraderError as error:
            print(f"grader: error: {error}", file=sys.stderr)
            return 2
        return 0
    root = Path(args[0]) if args else Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    return run_autograder(root)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    os._exit(status)  # as `grader` does: no teardown of torch's modules at exit
