"""Grade a class into the gradebook: collect -> skip what is graded -> grade -> record.

Each result is committed to the gradebook the moment its notebook is graded, so an interrupted
batch loses nothing that finished; the next run of the same command skips every submission
whose file, grader version and course are unchanged, and grades the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grader.config import Config
from grader.course import course_version, find_exercises
from grader.gradebook import Gradebook
from grader.grading import GRADER_VERSION, Job, grade_jobs
from grader.results import NotebookResult
from grader.submissions import Submission, open_submissions


class Progress(Protocol):
    """What `grade_class` tells about its progress (the CLI draws a bar)."""

    def start(self, total: int) -> None: ...

    def advance(self, submission: Submission, result: NotebookResult) -> None: ...


@dataclass(frozen=True)
class BatchSummary:
    """What one `grade_class` call did."""

    collected: int
    """Notebooks found in the submissions."""
    skipped: int
    """Already graded by this grader against this course: not graded again."""
    recorded: int
    """Graded now and committed to the gradebook."""
    problems: tuple[str, ...]
    """`student: message` for each notebook recorded without a grade (it could not be run)."""
    interrupted: bool = False


def grade_class(
    source: Path,
    config: Config,
    gradebook: Gradebook,
    workers: int | None = None,
    regrade: bool = False,
    progress: Progress | None = None,
) -> BatchSummary:
    """Grade every submission in folder or zip `source` that needs it; record each result."""
    exercises = find_exercises(config)
    versions = {name: course_version(ex, config.hidden_seed) for name, ex in exercises.items()}
    with open_submissions(source, exercises) as submissions:
        todo = [
            s
            for s in submissions
            if regrade or not gradebook.is_graded(s, GRADER_VERSION, versions.get(s.exercise, ""))
        ]
        if progress is not None:
            progress.start(len(todo))
        recorded: list[NotebookResult] = []

        def record(index: int, result: NotebookResult) -> None:
            submission = todo[index]
            version = versions.get(submission.exercise, "")
            gradebook.record(submission, result, GRADER_VERSION, version)
            recorded.append(result)
            if progress is not None:
                progress.advance(submission, result)

        jobs = [Job(s.path, s.exercise, s.problem) for s in todo]
        try:
            if jobs:
                grade_jobs(jobs, config, workers, record)
        except KeyboardInterrupt:
            return _summary(submissions, todo, recorded, interrupted=True)
    return _summary(submissions, todo, recorded)


def _summary(
    submissions: list[Submission],
    todo: list[Submission],
    recorded: list[NotebookResult],
    interrupted: bool = False,
) -> BatchSummary:
    by_path = {str(s.path): s for s in todo}
    problems = tuple(
        f"{by_path[result.path].student}: {result.error}" for result in recorded if result.error
    )
    return BatchSummary(
        collected=len(submissions),
        skipped=len(submissions) - len(todo),
        recorded=len(recorded),
        problems=problems,
        interrupted=interrupted,
    )
