"""The grader's settings: one object, read from `[tool.grader]` in pyproject.toml."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grader.errors import ConfigError, CourseNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

HIDDEN_SEED_ENV = "GRADER_HIDDEN_SEED"
COURSE_ENV = "GRADER_COURSE"
MAX_GRACE_MINUTES = 365 * 24 * 60
CANVAS_RESERVED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Points Possible")
"""Canvas's own columns (and its points row's label), which no assignment column may take."""
SECRET_BITS = 128  # far past guessing: the seeds of the hidden variants follow from the secret


@dataclass(frozen=True)
class Config:
    """Every setting of the grader, with its default."""

    root: Path = field(default_factory=Path.cwd)
    """The course folder: the one holding pyproject.toml with a `[tool.grader]` table."""
    solutions_dir: str = "solutions"
    """Reference notebooks, with `### BEGIN/END SOLUTION` regions (the source of truth)."""
    exercises_dir: str = "exercises"
    """Student notebooks, written from the solutions by `grader assign`."""
    checks_dir: str = "checks"
    """pytest modules, one per notebook, named `<notebook>.py`."""
    cache_dir: str = ".grader-cache"
    """Where reference results are kept between runs."""
    kit: bool = False
    """This folder is a student kit (`grader release`): no solutions, no secret; `check` grades
    the public variant against the results in `references_dir`."""
    references_dir: str = "references"
    """A kit's precomputed reference results (`grader.precomputed`)."""
    notebooks_dir: str = ""
    """The notebooks `grader check` checks when none is named ("": `exercises_dir`)."""
    variants_file: str = ""
    """With `kit`: the planned variants of an autograder bundle (`grader gradescope`), both
    runs of each exercise, drawn where the bundle was built ("": the public variant only)."""
    device: str = "auto"
    """`cpu`, `cuda`, or `auto` (cuda when available)."""
    cell_timeout: float = 60.0
    """Seconds one cell may run before it is interrupted."""
    notebook_timeout: float = 300.0
    """Seconds one whole notebook run may take."""
    memory_limit_mb: int = 2048
    """Memory one kernel, and everything it starts, may use."""
    process_limit: int = 64
    """Processes and threads one kernel may run at once (where cgroups are available)."""
    output_limit_kb: int = 1024
    """Output kept per cell; the rest is dropped with a note."""
    cluster: str = ""
    """Address of a Dask scheduler (`tcp://host:8786`) whose workers run the notebooks ("": this
    machine runs them)."""
    templates_dir: str = ""
    """Jinja2 templates that replace the feedback pages' own of the same name ("": none)."""
    hidden_seed: int | None = None
    """Secret behind the hidden variant's seed and coefficients (env: GRADER_HIDDEN_SEED);
    unset: the one kept in `secret_file`, made at random the first time it is needed."""
    secret_file: str = ".grader-secret/hidden_seed"
    """Where the secret the grader made itself is kept; its folder tells git to ignore it."""
    due: dict[str, datetime] = field(default_factory=dict)
    """`[tool.grader.due]`: notebook -> when it is due (with its UTC offset); none: never late."""
    late_grace_minutes: float = 0.0
    """Minutes after the due time that still count as on time."""
    late_penalty_per_day: float = 0.0
    """Share of the notebook's maximum taken off per day late, or part of one (0.1: 10 %)."""
    late_penalty_cap: float = 1.0
    """The largest share of the maximum late work can lose (1.0: all of it)."""
    extensions: dict[str, dict[str, datetime]] = field(default_factory=dict)
    """`[tool.grader.extensions]`: student id -> notebook -> their own due time."""
    submission_pattern: str = ""
    """How a flat file's name names its student and notebook: `{student}_{notebook}.ipynb` or a
    regex with the groups `student` and `notebook` ("": the LMS download rules)."""
    canvas_assignment: str = ""
    """`export --canvas` writes one column, of each student's total, headed so (`Name (id)`);
    "": a column per notebook."""
    canvas_columns: dict[str, str] = field(default_factory=dict)
    """`[tool.grader.canvas_columns]`: notebook -> its Canvas column (`Name (id)`); others are
    headed by their name."""

    def path(self, folder: str) -> Path:
        """Absolute path of one of the course folders named above."""
        return (self.root / folder).resolve()


def without_course() -> Config:
    """The settings where no course is found (pages and exports of a gradebook alone): the
    defaults, with a root that holds no course folder to be looked into."""
    return Config(root=Path(os.devnull))


def find_course_root(named: Path | None = None, submitted: Sequence[Path] = ()) -> Path:
    """The course folder: `named`, else `$GRADER_COURSE`, else the nearest folder at or above the
    current one whose pyproject.toml has `[tool.grader]` and that neither is nor lies inside one
    of the `submitted` folders (a student's pyproject.toml must not choose the checks).
    """
    named = named or (Path(os.environ[COURSE_ENV]) if os.environ.get(COURSE_ENV) else None)
    if named is not None:
        if not _is_course(named):
            raise CourseNotFoundError(
                f"{named} is not a course folder: it has no pyproject.toml with a [tool.grader] "
                "table"
            )
        return named.resolve()
    start = Path.cwd().resolve()
    work = [folder.resolve() for folder in submitted]
    skipped = []
    for folder in (start, *start.parents):
        if any(folder.is_relative_to(inside) for inside in work):
            if (folder / "pyproject.toml").exists():  # never read: a student's file
                skipped.append(folder)
        elif _is_course(folder):
            return folder
    passed_over = "".join(f" ({folder} holds work being graded: not used)" for folder in skipped)
    raise CourseNotFoundError(
        f"no course folder (one whose pyproject.toml has a [tool.grader] table) at or above "
        f"{start}{passed_over}; name it with --course DIR or {COURSE_ENV}=DIR"
    )


def load_config(
    course: Path | None = None, *, submitted: Sequence[Path] = (), **overrides: Any
) -> Config:
    """Read the configuration of the course (see `find_course_root`); keyword arguments win over
    the file."""
    root = find_course_root(course, submitted)
    pyproject = root / "pyproject.toml"
    table = _read_toml(pyproject).get("tool", {}).get("grader", {})
    settings: dict[str, Any] = {**_validated(table, pyproject), "root": root}
    if HIDDEN_SEED_ENV in os.environ:
        settings["hidden_seed"] = _secret(os.environ[HIDDEN_SEED_ENV], HIDDEN_SEED_ENV)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    _check_limits(settings, pyproject)
    return Config(**settings)


POSITIVE_LIMITS = (
    "cell_timeout",
    "notebook_timeout",
    "memory_limit_mb",
    "process_limit",
    "output_limit_kb",
)


def _check_limits(settings: dict[str, Any], source: Path) -> None:
    """A limit of zero or less (from the file or the command line) is a ConfigError."""
    for key in POSITIVE_LIMITS:
        value = settings.get(key)
        if value is not None and not value > 0:  # `not >`: NaN is refused too
            raise ConfigError(
                f"{key} must be more than 0, got {value!r} (in {source} or its option)"
            )


def hidden_secret(config: Config) -> int:
    """The hidden variant's secret: `config.hidden_seed`, else the one in `secret_file`, which
    is made (at random, readable by its owner only) if there is none yet."""
    if config.hidden_seed is not None:
        return config.hidden_seed
    path = config.path(config.secret_file)
    if not path.is_file():
        _make_secret(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the hidden variant's secret {path}: {error}") from None
    return _secret(text.strip(), str(path))


def _make_secret(path: Path) -> None:
    """Write a new random secret to `path`, unless another grader does so first."""
    try:
        new_folder = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        if new_folder:  # as .pytest_cache does: git then never commits the folder, whatever
            # the course's own .gitignore says
            (path.parent / ".gitignore").write_text("# made by the grader\n*\n", encoding="utf-8")
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{secrets.randbits(SECRET_BITS)}\n")
        try:
            os.link(partial, path)  # all at once, and never over a secret already there
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot write the hidden variant's secret to {path} ({error.strerror}); "
            f"set {HIDDEN_SEED_ENV} instead"
        ) from None


def _is_course(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and "grader" in _read_toml(pyproject).get("tool", {})


def _validated(table: dict[str, Any], source: Path) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "root"}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [tool.grader]; known keys: {', '.join(fields)}"
            )
        default = getattr(Config(), key)
        expected = int if default is None else type(default)  # None: the secret, an integer
        if expected is float and isinstance(value, int):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(
                f"{source}: [tool.grader] {key} must be a {expected.__name__}, got {value!r}"
            )
    if "hidden_seed" in table:
        _secret(str(table["hidden_seed"]), f"{source}: [tool.grader] hidden_seed")
    _check_canvas_columns(table.get("canvas_columns", {}), table, source)
    if table.get("submission_pattern"):
        from grader.submissions import file_name_pattern  # the rules of file names live there

        try:
            file_name_pattern(table["submission_pattern"])
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    return {**table, **_late_policy(table, source)}


def _late_policy(table: dict[str, Any], source: Path) -> dict[str, Any]:
    """The late-work keys of `table`, checked, with their due times as aware datetimes."""
    notebooks = {path.stem for path in _solutions(table, source.parent)}
    for key in ("late_penalty_per_day", "late_penalty_cap"):
        if not 0 <= table.get(key, 0) <= 1:
            raise ConfigError(
                f"{source}: [tool.grader] {key} is a share of the notebook's maximum, "
                f"from 0 to 1; got {table[key]!r}"
            )
    if not 0 <= table.get("late_grace_minutes", 0) <= MAX_GRACE_MINUTES:
        raise ConfigError(
            f"{source}: [tool.grader] late_grace_minutes must be from 0 to {MAX_GRACE_MINUTES} "
            f"(a year); got {table['late_grace_minutes']!r}"
        )
    policy: dict[str, Any] = {}
    if "due" in table:
        policy["due"] = _due_times(table["due"], notebooks, f"{source}: [tool.grader.due]")
    if "extensions" in table:
        policy["extensions"] = {
            str(student): _due_times(
                times, notebooks, f"{source}: [tool.grader.extensions.{student}]"
            )
            for student, times in table["extensions"].items()
        }
    return policy


def _check_canvas_columns(columns: dict[str, Any], table: dict[str, Any], source: Path) -> None:
    """Each notebook named once, with a heading no other column of the Canvas file has."""
    notebooks = {path.stem for path in _solutions(table, source.parent)}
    headings = [columns.get(notebook, notebook) for notebook in notebooks]
    taken = {*CANVAS_RESERVED, *(h for h in headings if headings.count(h) > 1)}
    for notebook, heading in columns.items():
        if notebook not in notebooks or not isinstance(heading, str) or not heading.strip():
            raise ConfigError(
                f"{source}: [tool.grader.canvas_columns] {notebook!r} = {heading!r}: each key "
                "must be a notebook of the course and each value its Canvas column, "
                "`Name (assignment id)`"
            )
        if heading.strip() in taken:
            raise ConfigError(
                f"{source}: [tool.grader.canvas_columns] {notebook!r} = {heading!r}: another "
                "column of the Canvas file is headed so; give each notebook its own"
            )


def _solutions(table: dict[str, Any], root: Path) -> list[Path]:
    folder = root / str(table.get("solutions_dir", Config.solutions_dir))
    return sorted(folder.glob("*.ipynb"))


def _due_times(times: object, notebooks: set[str], where: str) -> dict[str, datetime]:
    """`{notebook: due time}` from a TOML table of offset date-times or ISO 8601 strings."""
    if not isinstance(times, dict):
        raise ConfigError(f"{where} must be a table of notebook = due time")
    due = {}
    for notebook, value in times.items():
        if notebook not in notebooks:
            raise ConfigError(
                f"{where}: no notebook is called {notebook!r}; the course has: "
                f"{', '.join(sorted(notebooks)) or 'none'}"
            )
        due[notebook] = _due_time(value, f"{where} {notebook}")
    return due


def _due_time(value: object, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        moment = None
    if not isinstance(moment, datetime):
        raise ConfigError(f"{where}: {value!r} is not a date and time (2026-10-01T23:59:00+02:00)")
    if moment.utcoffset() is None:
        raise ConfigError(
            f"{where}: {value!r} has no UTC offset; write it with one (2026-10-01T23:59:00+02:00 "
            "or ...Z), as a due time means one moment for everyone"
        )
    try:
        moment.astimezone(timezone.utc)  # what late work is measured against
    except OverflowError:
        raise ConfigError(f"{where}: {value!r} is out of the range of dates") from None
    return moment


def _secret(text: str, source: str) -> int:
    """The hidden variant's secret from `text`: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        # the text itself is not repeated: it may be (most of) the secret
        raise ConfigError(f"{source} must be a non-negative integer (the hidden variant's secret)")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
