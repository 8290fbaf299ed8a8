"""Failures of the grader itself.

A student's mistake (a cell that raises, a failed check, a timeout) is never an exception here: it
is data in the results. The exceptions below mean the grader could not do its job, and the CLI maps
every one of them to exit status 2 with its message.
"""

from __future__ import annotations

from pathlib import Path


class GraderError(Exception):
    """Base class: the grader cannot go on; the message says what to do."""


class ConfigError(GraderError):
    """The `[tool.grader]` table or a command-line option is invalid."""


class UnknownNotebookError(GraderError):
    """A notebook that matches no exercise of the course."""

    def __init__(self, path: Path, known: list[str], name: str | None = None) -> None:
        self.path = path
        self.known = known
        self.name = path.stem if name is None else name
        names = ", ".join(known) or "none"
        super().__init__(
            f"{path}: no exercise is called {self.name!r}; the course has: {names}. "
            "Name the notebook after its exercise."
        )


class MarkerError(GraderError):
    """A `### BEGIN SOLUTION` / `### END SOLUTION` region is malformed."""

    def __init__(self, notebook: str, cell: str, line: int, problem: str) -> None:
        self.notebook = notebook
        self.cell = cell
        self.line = line
        self.problem = problem
        super().__init__(f"{notebook}, cell {cell}, line {line}: {problem}")


class CourseError(GraderError):
    """The course's own notebooks or checks are missing or malformed."""


class ReferenceFailedError(CourseError):
    """A run of the reference solution failed: no student can be graded against it."""

    def __init__(self, solution: Path, variant: str, problem: str) -> None:
        self.solution = solution
        self.variant = variant
        self.problem = problem
        super().__init__(
            f"the reference solution failed: {solution} on {variant}: {problem}; nothing was "
            "cached: fix the solution (or, on a busy machine, allow more time with "
            "--cell-timeout) and run again"
        )


class CourseNotFoundError(ConfigError):
    """No course folder was named, and none could be found where it may be looked for."""


class DeviceError(GraderError):
    """The requested device cannot be used."""


class KernelStartError(GraderError):
    """A kernel ended or stayed silent before any student code ran: the machine or the limits."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"a kernel {what} before running any notebook code: the usual cause is a memory "
            "limit too small for torch (`memory_limit_mb` in [tool.grader]; torch needs about "
            "1.2 GB of address space) or a machine too loaded to start it in time"
        )


class SubmissionsError(GraderError):
    """The submissions to grade cannot be read (no such folder, not a zip archive, ...)."""


class GradebookError(GraderError):
    """The gradebook database cannot be opened, created or migrated."""


class ExportError(GraderError):
    """An export or a feedback page cannot be written where it was asked to go."""


class RosterError(GraderError):
    """A class roster cannot be read (not a file, not one of the formats read, ids repeated)."""


class PrecomputedMismatchError(CourseError):
    """Precomputed reference results (a student kit's) have none for this exercise, grader
    version, checks module or device: the message says which, and what to install or fetch."""


class ManualGradingError(GraderError):
    """A manual-grading command names a student, notebook or check the class does not have, or
    gives a score out of range."""


class ClusterError(GraderError):
    """The Dask cluster given with `--cluster` cannot be reached or cannot run the grader."""
