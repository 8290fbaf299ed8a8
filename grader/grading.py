"""The pipeline, end to end: prepare -> execute -> extract -> check, for each notebook.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_event_loop
from nbformat import NotebookNode

from grader.check import (
    FollowThrough,
    VariantRuns,
    credit_follow_through,
    plan_follow_through,
    run_checks,
)
from grader.config import Config, hidden_secret
from grader.course import CheckSpec, Exercise, exercise_for, find_exercises, load_check_spec
from grader.engine.client import Zygote, start_zygote
from grader.engine.isolation import detect_isolation
from grader.engine.limits import ResourceLimits
from grader.errors import (
    ConfigError,
    DeviceError,
    GraderError,
    UnknownNotebookError,
)
from grader.execute import Limits, run_notebook
from grader.extract import (
    CellStatus,
    RunData,
    collect_run,
)
from grader.figures import draw_figures
from grader.notebook import grade_id, is_todo, read_course_notebook
from grader.pool import KernelPool
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
    collect_record,
    executed_record,
    questions,
    reference_run,
)
from grader.results import Answer, CheckResult, NotebookResult
from grader.untrusted import clean_text

_REPORTING_LOCK = threading.Lock()
MAX_ANSWER_CHARS = 20_000


@dataclass(frozen=True)
class _Course:
    """What grading one exercise needs, read once."""

    exercise: Exercise
    pristine: NotebookNode
    solution: NotebookNode
    spec: CheckSpec


@dataclass(frozen=True)
class _Session:
    """What every run of one grading run shares."""

    config: Config
    device: str
    limits: Limits
    hidden_seed: int
    """The secret behind every hidden variant of the run, read once."""


@dataclass(frozen=True)
class Job:
    """One notebook to grade: its file, the exercise it claims to be, and why it cannot be run
    (set when the submission could not even be collected, e.g. an unsafe archive entry)."""

    path: Path
    exercise: str
    problem: str = ""


@dataclass
class _Grading:
    """One notebook in progress: its variant runs, filled in by whichever workers ran them, then,
    where its checks call for one, its follow-through runs."""

    index: int
    path: Path
    course: _Course
    prepared: PreparedNotebook
    plan: list[Variant]
    started: float
    runs: dict[int, VariantRuns] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    """The verdicts of `runs`, once they are all in."""
    seconds: float = 0.0
    """How long `runs` took: the time reported (a follow-through run's own time is not shown)."""
    follow_through: FollowThrough | None = None
    substituted: dict[int, VariantRuns] = field(default_factory=dict)


def check_notebooks(
    paths: list[Path],
    config: Config,
    workers: int | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
    zygote: Zygote | None = None,
) -> list[NotebookResult]:
    """Grade each notebook in `paths` (folders are searched for `*.ipynb`), in order.

    A notebook is matched to the exercise of the same name. Up to `workers` runs go on at once
    (default: one per core), each worker with its own pool of warm kernels; `on_result` is
    called with each result as soon as it is ready. `zygote`: see `grade_jobs`.
    """
    jobs = [Job(path, path.stem) for path in expand_paths(paths)]
    report = None if on_result is None else (lambda _index, result: on_result(result))
    return grade_jobs(jobs, config, workers, report, zygote)


def grade_jobs(
    jobs: list[Job],
    config: Config,
    workers: int | None = None,
    on_result: Callable[[int, NotebookResult], None] | None = None,
    zygote: Zygote | None = None,
) -> list[NotebookResult]:
    """Grade `jobs` in parallel; `on_result(index, result)` is called as each one is ready.

    Every notebook runs twice (its own parameters and the hidden variant), and twice more where
    its checks call for follow-through; the runs are spread over `workers` workers (default: one
    per core), both runs of a notebook at once where two are free. `zygote`: one the caller
    started early so that its imports overlap the caller's set-up, and closes; by default one is
    started here where kernels are forked.

    On Ctrl-C (or a grader error) no new notebook is started; the notebooks in progress finish
    (their follow-through runs included) and are reported before the exception goes on.
    """
    results: dict[int, NotebookResult] = {}

    def report(index: int, result: NotebookResult) -> None:
        with _REPORTING_LOCK:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

    exercises = find_exercises(config)
    runnable = sum(1 for job in jobs if not job.problem and job.exercise in exercises)
    # a kit has no hidden variant; an autograder bundle has both, planned where it was built
    runs_per_notebook = 1 if config.kit and not config.variants_file else RUNS_PER_NOTEBOOK
    count = min(workers or os.cpu_count() or 1, runs_per_notebook * runnable)  # no idle kernels
    with contextlib.ExitStack() as stack:
        if zygote is None and count:  # importing torch while the checks modules load here
            zygote = stack.enter_context(start_zygote())
        pending: deque[tuple[int, Job, _Course]] = deque()
        for index, (job, course) in enumerate(_match(jobs, exercises, config.kit)):
            if isinstance(course, GraderError):  # nothing to run: reported at once
                report(index, NotebookResult(job.exercise, str(job.path), (), error=str(course)))
            else:
                pending.append((index, job, course))
        if count:
            limits = execution_limits(config, count)
            device = resolve_device(config.device)
            secret = 0 if config.kit else hidden_secret(config)  # a kit has none, nor needs one
            session = _Session(config, device, limits, secret)
            pools = [
                KernelPool(limits.resources, limits.threads, zygote=zygote) for _ in range(count)
            ]
            _run_workers(_Schedule(pending, session), pools, report)
    return [results[index] for index in sorted(results)]


class _Schedule:
    """Hands the notebooks' runs to the workers, one at a time.

    The runs of notebooks already started come first, so that the two runs of a notebook go on
    at once on two workers and its result comes early; follow-through runs, opened once a
    notebook's checks call for them, come before all others. After `stop` no notebook is
    started, but the runs of those started (follow-through runs included) are still handed out:
    every started notebook is reported, with the grade it would have had anyway.
    """

    def __init__(self, pending: deque[tuple[int, Job, _Course]], session: _Session) -> None:
        self.session = session
        self._pending = pending
        self._open: deque[tuple[_Grading, int]] = deque()
        self._starting = 0  # notebooks being prepared by a worker, their other runs not yet open
        self._checking = 0  # notebooks being checked by a worker: follow-through runs may come
        self._stopped = False
        self._changed = threading.Condition()

    def next(self) -> tuple[_Grading, int] | None:
        """A notebook and the index of the variant to run next, or None when all are handed out."""
        with self._changed:
            while not self._open and self._deciding() and (self._stopped or not self._pending):
                self._changed.wait()
            if self._open:
                return self._open.popleft()
            if self._stopped or not self._pending:
                return None
            index, job, course = self._pending.popleft()
            self._starting += 1
        grading = None
        try:  # outside the lock: reading a large notebook takes a while
            grading = _start_grading(index, job.path, course, self.session)
            return grading, 0
        finally:
            with self._changed:
                self._starting -= 1
                if grading is not None:
                    self._open.extend((grading, variant) for variant in range(1, len(grading.plan)))
                self._changed.notify_all()

    def _deciding(self) -> int:
        """Notebooks a worker is preparing or checking: more runs may come from them."""
        return self._starting + self._checking

    def finish(self, grading: _Grading, variant: int, runs: VariantRuns) -> bool:
        """Keep the runs of one variant; whether they were the last of the notebook's own runs
        (or of its follow-through runs). If so, the caller checks it, then calls `decided`."""
        with self._changed:
            stage = grading.runs if grading.follow_through is None else grading.substituted
            stage[variant] = runs
            last = len(stage) == len(grading.plan)
            self._checking += last
            return last

    def decided(self, grading: _Grading, follow_through: FollowThrough | None) -> None:
        """A notebook `finish` said was done has been checked: open the follow-through runs it
        needs, if any (else it has been reported, or checking it failed)."""
        with self._changed:
            self._checking -= 1
            if follow_through is not None:
                grading.follow_through = follow_through
                self._open.extendleft((grading, v) for v in reversed(range(len(grading.plan))))
            self._changed.notify_all()

    def backlog(self) -> int:
        """Runs not handed out yet (none of the notebooks still to start, once stopped)."""
        with self._changed:
            unstarted = 0 if self._stopped else len(self._pending)
            return len(self._open) + self._starting + RUNS_PER_NOTEBOOK * unstarted

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()


def _run_workers(
    schedule: _Schedule,
    pools: list[KernelPool],
    report: Callable[[int, NotebookResult], None],
) -> None:
    """Run the scheduled runs on a thread per pool; each thread closes its pool."""

    def work(pool: KernelPool) -> None:
        try:
            with pool:
                pool.prime()
                while (task := schedule.next()) is not None:
                    grading, variant = task
                    # A kernel launched ahead only where another run will be there to take it.
                    pool.ahead = 1 if schedule.backlog() >= len(pools) else 0
                    runs = _stage_runs(grading, variant, schedule.session, pool)
                    if schedule.finish(grading, variant, runs):
                        follow_through = None
                        try:
                            follow_through = _conclude(grading, schedule.session, report)
                        finally:  # even when checking failed: the other workers wait for it
                            schedule.decided(grading, follow_through)
        finally:
            ensure_event_loop().close()  # the loop jupyter_client made for this thread

    with ThreadPoolExecutor(max_workers=len(pools), thread_name_prefix="grader") as executor:
        futures = [executor.submit(work, pool) for pool in pools]
        try:
            for future in futures:
                future.result()
        except BaseException:
            schedule.stop()  # Ctrl-C or a grader error: finish the notebooks in progress
            raise


def _match(
    jobs: list[Job], exercises: dict[str, Exercise], kit: bool
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
            courses[exercise.name] = _load_course(exercise, kit)
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


def _load_course(exercise: Exercise, kit: bool) -> _Course:
    pristine = read_course_notebook(exercise.exercise_path)
    # A kit has no solutions: its references are precomputed, and it gives no follow-through.
    solution = pristine if kit else read_course_notebook(exercise.solution_path)
    course = _Course(exercise, pristine, solution, load_check_spec(exercise))
    for nb in (course.pristine, course.solution):  # the follow-through run takes cells from both
        check_dependencies(nb, exercise.name, course.spec.depends_on)
    return course


def _start_grading(index: int, path: Path, course: _Course, session: _Session) -> _Grading:
    """Read a submitted notebook and plan its runs."""
    started = time.monotonic()
    prepared = prepare_submission(path, course.pristine)
    name = course.exercise.name
    config = session.config
    if config.variants_file:
        plan = load_variants(config.path(config.variants_file), name, session.device)
    elif config.kit:
        plan = [public_variant(course.pristine, name, session.device)]
    else:
        plan = variants(course.pristine, name, course.spec, session.device, session.hidden_seed)
    return _Grading(index, path, course, prepared, plan, started)


def _conclude(
    grading: _Grading, session: _Session, report: Callable[[int, NotebookResult], None]
) -> FollowThrough | None:
    """Check a notebook whose runs are done: report it, or say which follow-through run it needs
    first (only a notebook with a TO DO cell that lost points through another one does)."""
    course = grading.course
    if grading.follow_through is None:
        runs = _in_order(grading, grading.runs)
        grading.checks = run_checks(course.exercise.name, course.exercise.checks_path, runs)
        grading.seconds = time.monotonic() - grading.started
        edited = edited_todo_cells(grading.prepared.notebook, course.pristine)
        follow_through = plan_follow_through(grading.checks, course.spec.depends_on, edited)
        if follow_through is not None and not session.config.kit:
            return follow_through
    report(grading.index, _result(grading, session))
    return None


def _in_order(grading: _Grading, runs: dict[int, VariantRuns]) -> list[VariantRuns]:
    return [runs[variant] for variant in range(len(grading.plan))]


def _final_checks(grading: _Grading) -> list[CheckResult]:
    """The verdicts, with follow-through credit where a follow-through run was made."""
    if grading.follow_through is None:
        return grading.checks
    exercise = grading.course.exercise
    substituted = run_checks(
        exercise.name, exercise.checks_path, _in_order(grading, grading.substituted)
    )
    depends_on = grading.course.spec.depends_on
    return credit_follow_through(grading.checks, grading.follow_through, substituted, depends_on)


def _result(grading: _Grading, session: _Session) -> NotebookResult:
    """The result of a notebook whose runs are all done and checked."""
    course, prepared = grading.course, grading.prepared
    runs = _in_order(grading, grading.runs)
    return NotebookResult(
        notebook=course.exercise.name,
        path=str(grading.path),
        checks=tuple(_final_checks(grading)),
        notices=prepared.notices,
        seconds=grading.seconds,
        device=session.device,
        isolation=detect_isolation().description,
        seeds=tuple(int(v.parameters.get("seed", 0)) for v in grading.plan),
        answers=() if prepared.unreadable else todo_answers(prepared.notebook),
        figures=draw_figures(course.spec.figures, runs[0]),
    )


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


def _stage_runs(grading: _Grading, index: int, session: _Session, pool: KernelPool) -> VariantRuns:
    """The runs of variant `index` that the notebook needs now: its own, or a follow-through one."""
    variant = grading.plan[index]
    if grading.follow_through is None:
        return _variant_runs(grading, variant, session, pool)
    course = grading.course
    nb = with_solution_cells(
        grading.prepared.notebook, course.solution, grading.follow_through.substituted
    )
    student = _student_run(nb, variant, questions(course.spec, variant), session, pool)
    return VariantRuns(variant.label, student, grading.runs[index].reference, variant.hidden)


def _variant_runs(
    grading: _Grading, variant: Variant, session: _Session, pool: KernelPool
) -> VariantRuns:
    """The student's and the reference's runs under one variant, decoded."""
    course, prepared = grading.course, grading.prepared
    asked = questions(course.spec, variant)
    config = session.config
    if config.kit:  # first: a kit that does not fit is said at once, no kernel run for nothing
        store = config.path(config.references_dir)
        reference = load_reference(store, course.exercise.name, variant, asked)
    else:
        request = ReferenceRequest(course.exercise, course.solution, variant, asked)
        cache_dir = config.path(config.cache_dir)
        reference = reference_run(request, cache_dir, functools.partial(_record, session, pool))
    if prepared.unreadable:
        student = _unrun(variant, prepared.notebook, prepared.unreadable)
    else:
        student = _student_run(prepared.notebook, variant, asked, session, pool)
    return VariantRuns(variant.label, student, reference, variant.hidden)


def _record(
    session: _Session, pool: KernelPool, nb: NotebookNode, probes: list[str]
) -> dict[str, Any]:
    return executed_record(run_notebook(nb, probes, session.limits, pool))


def _student_run(
    nb: NotebookNode, variant: Variant, asked: Questions, session: _Session, pool: KernelPool
) -> RunData:
    """A prepared notebook run under `variant` and asked the checks' questions, decoded."""
    nb = with_parameters(nb, variant.parameters)
    record = _record(session, pool, nb, asked.probes)
    return collect_record(variant, record, asked)


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
        gid: CellStatus("skipped", evalue=f"your notebook could not be read: {reason}")
        for cell in nb.cells
        if is_todo(cell) and (gid := grade_id(cell))
    }
    return collect_run(dict(variant.parameters), cells, [(None, reason)], [], [])
