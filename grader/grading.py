"""The pipeline, end to end: prepare -> execute -> extract -> check, for each notebook.

`_grade_notebook` reads it top to bottom for one notebook; its runs go to a `grader.runner.Runner`
(a `LocalRunner` by default), and about as many notebooks as the runner runs at once are in
progress together, each on a thread of its own, so that the runner always has runs waiting and
results come in order, early.

A notebook whose TO DO cell lost points because an earlier TO DO cell it uses is wrong gets one
more run per variant, with that earlier cell taken from the solution (`grader.check`'s
follow-through); only notebooks that need it pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from nbformat import NotebookNode

from grader.check import (
    VariantRuns,
    credit_follow_through,
    plan_follow_through,
    run_checks,
)
from grader.config import Config, hidden_secret
from grader.course import CheckSpec, Exercise, exercise_for, find_exercises, load_check_spec
from grader.engine.limits import ResourceLimits
from grader.errors import (
    ConfigError,
    DeviceError,
    GraderError,
    UnknownNotebookError,
)
from grader.extract import CellOutcome, RunData, collect_run
from grader.figures import draw_figures
from grader.notebook import grade_id, is_todo, read_course_notebook
from grader.precomputed import load_reference, load_variants
from grader.prepare import (
    RUNS_PER_NOTEBOOK,
    PreparedNotebook,
    Variant,
    check_dependencies,
    edited_todo_cells,
    prepare_submission,
    public_variant,
    variants,
    with_parameters,
    with_solution_cells,
)
from grader.references import (
    Questions,
    ReferenceRequest,
    collect_executed,
    questions,
    reference_run,
)
from grader.results import Answer, NotebookResult
from grader.runner import ExecutedNotebook, Limits, LocalRunner, Runner, RunRequest
from grader.untrusted import clean_text

MAX_ANSWER_CHARS = 20_000
# Other notebooks' runs wait for a reference run (its cache entry) and a follow-through run (its
# notebook's result): both go before the students' own runs.
REFERENCE_PRIORITY = 2
FOLLOW_THROUGH_PRIORITY = 1


@dataclass(frozen=True)
class _Course:
    """What grading one exercise needs, read once, and the runs every notebook of it gets."""

    exercise: Exercise
    pristine: NotebookNode
    solution: NotebookNode
    spec: CheckSpec
    plan: list[Variant]
    asked: list[Questions]
    """What the checks ask of the runs of each variant of `plan`."""
    precomputed: list[RunData] | None = None
    """A kit's reference runs, one per variant (it has no solutions to run)."""


@dataclass(frozen=True)
class _Session:
    """What every run of one grading run shares."""

    config: Config
    device: str
    limits: Limits
    hidden_seed: int
    """The secret behind every hidden variant of the run, read once."""
    runner: Runner


@dataclass(frozen=True)
class Job:
    """One notebook to grade: its file, the exercise it claims to be, and why it cannot be run
    (set when the submission could not even be collected, e.g. an unsafe archive entry)."""

    path: Path
    exercise: str
    problem: str = ""


def check_notebooks(
    paths: list[Path],
    config: Config,
    *,
    workers: int | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
    runner: Runner | None = None,
) -> list[NotebookResult]:
    """Grade each notebook in `paths` (folders are searched for `*.ipynb`), in order.

    A notebook is matched to the exercise of the same name. Up to `workers` runs go on at once
    (default: one per core); `on_result` is called with each result as soon as it is ready.
    `runner`: see `grade_jobs`.
    """
    jobs = [Job(path, path.stem) for path in expand_paths(paths)]
    report = None if on_result is None else (lambda _index, result: on_result(result))
    return grade_jobs(jobs, config, workers=workers, on_result=report, runner=runner)


def grade_jobs(
    jobs: list[Job],
    config: Config,
    *,
    workers: int | None = None,
    on_result: Callable[[int, NotebookResult], None] | None = None,
    runner: Runner | None = None,
) -> list[NotebookResult]:
    """Grade `jobs` in parallel; `on_result(index, result)` is called as each one is ready.

    Every notebook runs twice (its own parameters and the hidden variant), and twice more where
    its checks call for follow-through; both runs of a notebook go to the runner at once.
    `runner`: one the caller made (and closes), e.g. early, so that its start overlaps the
    caller's set-up, or one that runs elsewhere; by default a `LocalRunner` of `workers`
    workers (default: one per core) is made here.

    On Ctrl-C or a grader error no new notebook is started; the notebooks in progress finish
    (their follow-through runs included) and are reported before the exception goes on.
    """
    results: dict[int, NotebookResult] = {}

    def report(index: int, result: NotebookResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)

    exercises = find_exercises(config)
    runnable = sum(1 for job in jobs if not job.problem and job.exercise in exercises)
    # a kit has no hidden variant; an autograder bundle has both, planned where it was built
    runs_per_notebook = 1 if config.kit and not config.variants_file else RUNS_PER_NOTEBOOK
    with contextlib.ExitStack() as stack:
        if runner is None and runnable:  # first: the zygote imports torch as the checks load
            count = min(workers or os.cpu_count() or 1, runs_per_notebook * runnable)
            runner = stack.enter_context(LocalRunner(count))
        # Only where there is something to run: none is asked of a batch without a notebook;
        # a kit has no secret, nor needs one.
        device = resolve_device(config.device) if runnable else config.device
        secret = hidden_secret(config) if runnable and not config.kit else 0
        pending: list[tuple[int, Path, _Course]] = []
        for index, (job, course) in enumerate(_match(jobs, exercises, config, device, secret)):
            if isinstance(course, GraderError):  # nothing to run: reported at once
                report(index, NotebookResult(job.exercise, str(job.path), (), error=str(course)))
            else:
                pending.append((index, job.path, course))
        if pending and runner is not None:
            count = min(runner.capacity, runs_per_notebook * len(pending))  # no idle kernels
            session = _Session(config, device, execution_limits(config, count), secret, runner)
            _grade_in_flight(pending, session, report)
    return [results[index] for index in sorted(results)]


def _grade_in_flight(
    pending: list[tuple[int, Path, _Course]],
    session: _Session,
    report: Callable[[int, NotebookResult], None],
) -> None:
    """Grade the notebooks, a bounded number at once, reporting each as it is done.

    Enough are in progress for the runner to have a run waiting for each of its slots while
    others are being checked; after the first failure (or Ctrl-C) no other one is started.
    """
    stopped = threading.Event()

    def grade(path: Path, course: _Course) -> NotebookResult | None:
        if stopped.is_set():  # its thread came free before the main thread cancelled it
            return None
        try:
            return _grade_notebook(path, course, session)
        except BaseException:
            stopped.set()  # at once: the other threads start nothing from now on
            raise

    in_flight = session.runner.capacity + 1
    with ThreadPoolExecutor(in_flight, thread_name_prefix="notebook") as notebooks:
        started = {notebooks.submit(grade, path, course): index for index, path, course in pending}
        waiting = set(started)
        try:
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=started.__getitem__):
                    _report(future, started[future], report)
        except BaseException:
            _stop_starting(notebooks, stopped)
            for future in sorted(waiting, key=started.__getitem__):
                if not future.cancelled() and future.exception() is None:
                    _report(future, started[future], report)
            raise  # the first failure; those of notebooks in progress go with it


def _stop_starting(notebooks: ThreadPoolExecutor, stopped: threading.Event) -> None:
    """No notebook not started yet will be: Ctrl-C or a grader error."""
    stopped.set()
    notebooks.shutdown(wait=False, cancel_futures=True)


def _report(
    future: Future[NotebookResult | None],
    index: int,
    report: Callable[[int, NotebookResult], None],
) -> None:
    result = future.result()
    if result is not None:
        report(index, result)


def _match(
    jobs: list[Job], exercises: dict[str, Exercise], config: Config, device: str, hidden_seed: int
) -> list[tuple[Job, _Course | GraderError]]:
    """Each job with its exercise, loaded once per exercise, or why it has none."""
    courses: dict[str, _Course] = {}
    planned: list[tuple[Job, _Course | GraderError]] = []
    for job in jobs:
        if job.problem:
            planned.append((job, GraderError(f"{job.path.name}: {job.problem}")))
            continue
        try:
            exercise = exercise_for(job.path, job.exercise, exercises)
        except UnknownNotebookError as error:
            planned.append((job, error))
            continue
        if exercise.name not in courses:
            courses[exercise.name] = _load_course(exercise, config, device, hidden_seed)
        planned.append((job, courses[exercise.name]))
    return planned


def expand_paths(paths: list[Path]) -> list[Path]:
    """The notebooks named by `paths`: files as given, folders by their `*.ipynb` files."""
    notebooks: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.ipynb"))
            if not found:
                raise GraderError(f"{path}: the folder has no .ipynb notebooks")
            notebooks.extend(found)
        elif path.is_file():
            notebooks.append(path)
        else:
            raise GraderError(f"{path}: no such file or folder")
    return notebooks


@functools.cache
def resolve_device(requested: str) -> str:
    """`cpu` or `cuda`, from `cpu`, `cuda` or `auto`."""
    import torch  # imported late: the grader's start overlaps the first kernel's

    if requested not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"device must be cpu, cuda or auto, not {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA device here")
    return requested


def _load_course(exercise: Exercise, config: Config, device: str, hidden_seed: int) -> _Course:
    """The exercise, read once, and its runs planned once: not on the notebooks' threads, where
    parsing Python (its parameters cell) beside pytest's parsing can fail (CPython 3.11's `ast`
    is not thread-safe, gh-106905). A kit's references are read here too: one that does not
    fit is said at once, no kernel run for nothing."""
    name, pristine = exercise.name, read_course_notebook(exercise.exercise_path)
    spec = load_check_spec(exercise)
    if config.variants_file:  # an autograder bundle: both variants, planned where it was built
        plan = load_variants(config.path(config.variants_file), name, device)
    elif config.kit:  # a student's kit: the public variant only
        plan = [public_variant(pristine, name, device)]
    else:
        plan = variants(pristine, name, spec, device, hidden_seed)
    asked = [questions(spec, variant) for variant in plan]
    if config.kit:  # its references precomputed; no solutions
        store = config.path(config.references_dir)
        kept = [load_reference(store, name, v, q) for v, q in zip(plan, asked, strict=True)]
        course = _Course(exercise, pristine, pristine, spec, plan, asked, kept)
    else:
        solution = read_course_notebook(exercise.solution_path)
        course = _Course(exercise, pristine, solution, spec, plan, asked)
    for nb in (course.pristine, course.solution):  # the follow-through run takes cells from both
        check_dependencies(nb, exercise.name, course.spec.depends_on)
    return course


def _grade_notebook(path: Path, course: _Course, session: _Session) -> NotebookResult:
    """Grade one notebook: prepare it, run it and the reference under each variant, check the
    runs, run it again with the solution's cells where a mistake would cost twice, and say."""
    prepared = prepare_submission(path, course.pristine)
    exercise, spec, plan, asked = course.exercise, course.spec, course.plan, course.asked
    own = [] if prepared.unreadable else _submit(session, prepared.notebook, plan, asked)
    references = course.precomputed or _references(session, course)
    students = _students(prepared, plan, asked, own)
    runs = [
        VariantRuns(v.label, student, reference, v.hidden)
        for v, student, reference in zip(plan, students, references, strict=True)
    ]
    checking = time.monotonic()
    checks = run_checks(exercise.name, exercise.checks_path, runs)
    # Its runs' time and its checks', not the time it waited for a kernel; a follow-through
    # run's own time is not shown.
    seconds = max((run.result().seconds for run in own), default=0.0)
    seconds += time.monotonic() - checking
    edited = edited_todo_cells(prepared.notebook, course.pristine)
    follow_through = plan_follow_through(checks, spec.depends_on, edited)
    if follow_through is not None and not session.config.kit:  # a kit has no solutions
        nb = with_solution_cells(prepared.notebook, course.solution, follow_through.substituted)
        again = _submit(session, nb, plan, asked, FOLLOW_THROUGH_PRIORITY)
        substituted = [
            replace(run, student=student)
            for run, student in zip(runs, _students(prepared, plan, asked, again), strict=True)
        ]
        rechecked = run_checks(exercise.name, exercise.checks_path, substituted)
        checks = credit_follow_through(checks, follow_through, rechecked, spec.depends_on)
    return NotebookResult(
        notebook=exercise.name,
        path=str(path),
        checks=tuple(checks),
        notices=prepared.notices,
        seconds=seconds,
        device=session.device,
        isolation=_isolation(own),
        seeds=tuple(int(v.parameters.get("seed", 0)) for v in plan),
        answers=() if prepared.unreadable else todo_answers(prepared.notebook),
        figures=draw_figures(spec.figures, runs[0]),
    )


def _submit(
    session: _Session,
    nb: NotebookNode,
    plan: list[Variant],
    asked: list[Questions],
    priority: int = 0,
) -> list[Future[ExecutedNotebook]]:
    """The runs of `nb` under every variant, submitted together: they go on at once."""
    return [
        session.runner.submit(
            RunRequest.of(with_parameters(nb, v.parameters), q.probes, session.limits, priority)
        )
        for v, q in zip(plan, asked, strict=True)
    ]


def _students(
    prepared: PreparedNotebook,
    plan: list[Variant],
    asked: list[Questions],
    runs: list[Future[ExecutedNotebook]],
) -> list[RunData]:
    """The student's runs decoded, once they are done (or, unread, what each says instead)."""
    if prepared.unreadable:
        return [_unrun(v, prepared.notebook, prepared.unreadable) for v in plan]
    return [
        collect_executed(v, run.result(), q) for v, run, q in zip(plan, runs, asked, strict=True)
    ]


def _references(session: _Session, course: _Course) -> list[RunData]:
    """The reference's run under each variant, looked up (or run) at once: one variant's run
    does not wait for another's."""
    with ThreadPoolExecutor(len(course.plan), thread_name_prefix="reference") as lookups:
        looked_up = [
            lookups.submit(_reference, session, course, variant, asked)
            for variant, asked in zip(course.plan, course.asked, strict=True)
        ]
        return [lookup.result() for lookup in looked_up]


def _reference(session: _Session, course: _Course, variant: Variant, asked: Questions) -> RunData:
    """The reference's run under `variant`: cached, or run now ahead of the students' runs."""

    def run(nb: NotebookNode, probes: list[str]) -> ExecutedNotebook:
        request = RunRequest.of(nb, probes, session.limits, REFERENCE_PRIORITY)
        return session.runner.submit(request).result()

    request = ReferenceRequest(course.exercise, course.solution, variant, asked)
    return reference_run(request, session.config.path(session.config.cache_dir), run)


def _isolation(runs: list[Future[ExecutedNotebook]]) -> str:
    """How the notebook's own runs were confined ("" when none was made)."""
    return "; ".join(sorted({run.result().isolation for run in runs}))


def todo_answers(nb: NotebookNode) -> tuple[Answer, ...]:
    """The code of every TO DO cell of a prepared notebook, cleaned for showing and storing
    (`grader.untrusted.clean_text`); long cells are cut."""
    answers = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if is_todo(cell) and gid:
            source = str(cell.source)
            if len(source) > MAX_ANSWER_CHARS:
                source = source[:MAX_ANSWER_CHARS] + "\n# ... (cut: the cell is too long to show)"
            source = clean_text(source)
            answers.append(Answer(gid, source))
    return tuple(answers)


def execution_limits(config: Config, workers: int = 1) -> Limits:
    """The limits of every notebook run, from the configuration.

    Each kernel gets an equal share of the cores for torch's intra-op threads, so that parallel
    workers do not oversubscribe the machine.
    """
    resources = ResourceLimits(memory_mb=config.memory_limit_mb, processes=config.process_limit)
    return Limits(
        cell_timeout=config.cell_timeout,
        notebook_timeout=config.notebook_timeout,
        output_kb=config.output_limit_kb,
        resources=resources,
        threads=max(1, (os.cpu_count() or 1) // workers),
    )


def _unrun(variant: Variant, nb: NotebookNode, reason: str) -> RunData:
    """The run of a notebook that could not be read: every TO DO cell says why."""
    cells = {
        gid: CellOutcome(gid, "skipped", evalue=f"your notebook could not be read: {reason}")
        for cell in nb.cells
        if is_todo(cell) and (gid := grade_id(cell))
    }
    return collect_run(dict(variant.parameters), cells, [(None, reason)], [], [])
