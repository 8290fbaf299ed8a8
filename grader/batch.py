"""Grade a class into the gradebook: collect -> skip what is graded -> grade -> record.

Each result is committed to the gradebook the moment its notebook is graded, so an interrupted
batch loses nothing that finished; the next run of the same command skips every submission
whose file, grader version and course are unchanged, and grades the rest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grader.config import Config, hidden_secret
from grader.course import course_version, find_exercises
from grader.gradebook import Gradebook
from grader.grading import Job, grade_jobs
from grader.references import GRADER_VERSION
from grader.results import NotebookResult
from grader.roster import match_submissions
from grader.runner import Runner
from grader.submissions import Submission, open_submissions


class Progress(Protocol):
    """What `grade_class` tells about its progress (the CLI draws a bar or writes lines)."""

    def stage(self, text: str) -> None:
        """What is being done before the first notebook is graded."""

    def start(self, total: int) -> None: ...

    def advance(self, submission: Submission, result: NotebookResult) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def advance(self, submission: Submission, result: NotebookResult) -> None:
        pass


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
    unmatched: tuple[str, ...] = ()
    """`file: why` for each notebook that names no student, or one off the roster: not graded
    (`grader.roster.match_submissions`)."""
    duplicates: tuple[str, ...] = ()
    """`file: why` for each copy of a notebook not graded because another copy handed in with it
    was (`grader.roster.one_per_notebook`)."""


def grade_class(
    source: Path,
    config: Config,
    gradebook: Gradebook,
    *,
    workers: int | None = None,
    regrade: bool = False,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> BatchSummary:
    """Grade every submission in folder or zip `source` that needs it; record each result.

    `workers`, `runner`: see `grader.grading.grade_jobs`."""
    progress = progress or _Silent()
    progress.stage("collecting the submissions")
    # read once: the fingerprints and the runs must see the same secret
    secret = hidden_secret(config)
    config = dataclasses.replace(config, hidden_seed=secret)
    exercises = find_exercises(config)
    versions = {name: course_version(ex, secret) for name, ex in exercises.items()}
    with open_submissions(source, exercises, config.submission_pattern) as found:
        matched = match_submissions(found, gradebook.roster())
        submissions = matched.submissions
        fingerprinted = [(s, versions.get(s.exercise, "")) for s in submissions]
        todo = [
            (s, version)
            for s, version in fingerprinted
            if regrade or not gradebook.is_graded(s, GRADER_VERSION, version)
        ]
        progress.start(len(todo))
        recorded = 0
        problems: list[str] = []

        def record(index: int, result: NotebookResult) -> None:
            nonlocal recorded
            submission, version = todo[index]
            gradebook.record(submission, result, GRADER_VERSION, version)
            recorded += 1
            if result.error:
                problems.append(f"{submission.student}: {result.error}")
            progress.advance(submission, result)

        jobs = [Job(s.path, s.exercise, s.problem) for s, _ in todo]
        interrupted = False
        try:
            if jobs:
                progress.stage(
                    "warming up: starting kernels; each exercise's reference solution runs "
                    "before its first notebook is graded (cached after)"
                )
                grade_jobs(jobs, config, workers=workers, on_result=record, runner=runner)
        except KeyboardInterrupt:
            interrupted = True
    return BatchSummary(
        collected=len(found),
        skipped=len(submissions) - len(todo),
        recorded=recorded,
        problems=tuple(problems),
        interrupted=interrupted,
        unmatched=tuple(matched.unmatched),
        duplicates=tuple(matched.duplicates),
    )
