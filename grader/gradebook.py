"""The gradebook: students, submissions, runs and check results, in any SQL database.

SQLite by default (a `gradebook.db` file, no server), any SQLAlchemy URL otherwise (PostgreSQL
for a department). History is kept: grading a submission again adds a run, it never erases one.
The schema is created and migrated by the grader itself (Alembic revisions in
`grader/migrations/versions`), the first time a gradebook is opened by a newer grader.

Text is cleaned where it enters the grader; every text written here is cleaned again
(`grader.untrusted`: no NUL, no lone surrogate, which SQLite's and PostgreSQL's UTF-8 text
reject) and messages are cut to `MAX_MESSAGE_CHARS`, so that no result can fail to be recorded.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.sql.expression import false

from grader.errors import GradebookError
from grader.results import Answer, CheckResult, Figure, NotebookResult, Series
from grader.roster import RosterEntry
from grader.submissions import Submission
from grader.untrusted import clean_message, clean_text

DEFAULT_DATABASE = "gradebook.db"
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_LOCK = 0x6772_6164_6562_6F6F  # a PostgreSQL advisory lock key: "gradeboo"


class Base(DeclarativeBase):
    """The gradebook's tables (their history is in the migrations)."""


class StudentRow(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)


class RosterRow(Base):
    __tablename__ = "roster"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lms_id: Mapped[str] = mapped_column(String, unique=True)
    name: Mapped[str] = mapped_column(String)
    email: Mapped[str] = mapped_column(String)
    section: Mapped[str] = mapped_column(String)


class SubmissionRow(Base):
    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("student_id", "notebook", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    notebook: Mapped[str] = mapped_column(String)
    file: Mapped[str] = mapped_column(String)
    sha256: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime]
    received_at: Mapped[datetime]
    lms_late: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    removed_at: Mapped[datetime | None]
    """When `grader remove` took it out of the grades (None: it counts)."""
    student: Mapped[StudentRow] = relationship()
    answers: Mapped[list[AnswerRow]] = relationship(order_by="AnswerRow.id")


class AnswerRow(Base):
    __tablename__ = "answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    grade_id: Mapped[str] = mapped_column(String)
    source: Mapped[str] = mapped_column(Text)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    graded_at: Mapped[datetime]
    grader_version: Mapped[str] = mapped_column(String)
    course_version: Mapped[str] = mapped_column(String)
    device: Mapped[str] = mapped_column(String)
    isolation: Mapped[str] = mapped_column(Text)
    seeds: Mapped[list[int]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    error: Mapped[str] = mapped_column(Text)
    notices: Mapped[list[str]] = mapped_column(JSON)
    figures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    checks: Mapped[list[CheckRow]] = relationship(order_by="CheckRow.position")


class CheckRow(Base):
    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    grade_id: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    points: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    hidden_message: Mapped[str] = mapped_column(Text, server_default="")


class ActionRow(Base):
    __tablename__ = "grading_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student: Mapped[str] = mapped_column(String, index=True)
    notebook: Mapped[str] = mapped_column(String)
    target: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    score: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String)
    at: Mapped[datetime]


@dataclass(frozen=True)
class GradedNotebook:
    """A submission's latest run, as read back from the gradebook."""

    student: str
    file: str
    sha256: str
    submitted_at: datetime
    graded_at: datetime
    grader_version: str
    result: NotebookResult
    lms_late: bool = False
    """Whether the LMS marked the submission late (its download's `LATE` mark)."""


ActionKind = Literal["override", "excuse", "unexcuse", "comment", "remove"]


@dataclass(frozen=True)
class GradingAction:
    """One thing an instructor did by hand, kept for ever in the gradebook's history.

    `student` is the key the grades list them under (the roster id where the roster has them),
    `target` a check's name, a TO DO cell's grade id, or "" for the whole notebook; `score` is
    the override's score (None: the override is taken back) and `text` its reason or the comment.
    """

    student: str
    notebook: str
    kind: ActionKind
    target: str = ""
    score: float | None = None
    text: str = ""
    by: str = ""
    at: datetime = field(default_factory=lambda: _now())
    """When, in UTC (naive, as every time in the gradebook)."""


def database_url(location: str | None) -> str:
    """A SQLAlchemy URL from `--db`: a URL as given, a plain path as a SQLite file."""
    if not location:
        return f"sqlite:///{DEFAULT_DATABASE}"
    if "://" not in location:
        return f"sqlite:///{Path(location)}"
    return location


class Gradebook:
    """An open gradebook; the schema is brought up to date when it is opened."""

    def __init__(self, location: str | None = None, *, create: bool = True) -> None:
        """`create=False`: a SQLite file that does not exist is a GradebookError (a mistyped
        `--db` of a command that only reads or adds to a gradebook must not make an empty one)."""
        self.url = database_url(location)
        if not create:
            _refuse_missing_file(self.url)
        self.engine = _engine(self.url)
        self.where = describe(self.engine)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_graded(self, submission: Submission, grader_version: str, course_version: str) -> bool:
        """Whether this very file was already graded by this grader against this course."""
        query = (
            select(RunRow.id)
            .join(SubmissionRow, RunRow.submission_id == SubmissionRow.id)
            .join(StudentRow, SubmissionRow.student_id == StudentRow.id)
            .where(
                StudentRow.name == clean_text(submission.student),
                SubmissionRow.notebook == clean_text(submission.exercise),
                SubmissionRow.sha256 == submission.sha256,
                SubmissionRow.removed_at.is_(None),
                RunRow.grader_version == grader_version,
                RunRow.course_version == course_version,
            )
            .limit(1)
        )
        with Session(self.engine) as session:
            return session.scalar(query) is not None

    def record(
        self,
        submission: Submission,
        result: NotebookResult,
        grader_version: str,
        course_version: str,
    ) -> None:
        """Add a run of `submission` with its check results, in one transaction."""
        try:
            with Session(self.engine) as session, session.begin():
                row = _submission_row(session, submission, result.answers)
                session.add(_run_row(row.id, result, grader_version, course_version))
        except SQLAlchemyError as error:
            raise GradebookError(
                f"cannot record {submission.file} in the gradebook {self.where}: {error}"
            ) from error

    def latest(self) -> list[GradedNotebook]:
        """For every student and notebook, the latest submission's latest run."""
        with Session(self.engine) as session:
            submissions = session.scalars(
                select(SubmissionRow)
                .where(SubmissionRow.removed_at.is_(None))
                .order_by(SubmissionRow.submitted_at, SubmissionRow.id)
            ).all()
            current = {(s.student_id, s.notebook): s for s in submissions}
            runs = _latest_runs(session, [s.id for s in current.values()])
            graded = [
                _graded(submission, runs[submission.id])
                for submission in current.values()
                if submission.id in runs
            ]
        return sorted(graded, key=lambda g: (g.student, g.result.notebook))

    def import_roster(self, entries: list[RosterEntry]) -> None:
        """Make `entries` the class roster, in one transaction (the previous one is replaced)."""
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(delete(RosterRow))
                session.add_all(
                    RosterRow(lms_id=e.lms_id, name=e.name, email=e.email, section=e.section)
                    for e in entries
                )
        except SQLAlchemyError as error:
            raise GradebookError(f"cannot keep the roster in {self.where}: {error}") from error

    def roster(self) -> list[RosterEntry]:
        """The class roster, by LMS id (empty when none was imported)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(RosterRow).order_by(RosterRow.lms_id)).all()
            return [RosterEntry(r.lms_id, r.name, r.email, r.section) for r in rows]

    def act(self, action: GradingAction) -> None:
        """Keep `action` in the history (it is never changed or erased)."""
        try:
            with Session(self.engine) as session, session.begin():
                session.add(_action_row(action))
        except SQLAlchemyError as error:
            raise GradebookError(
                f"cannot keep the {action.kind} in the gradebook {self.where}: {error}"
            ) from error

    def remove(self, action: GradingAction, students: Collection[str]) -> int:
        """Take the notebook's submissions of `students` (the names the grader recorded for
        `action.student`) out of the grades, keeping `action`; how many were taken out."""
        query = (
            update(SubmissionRow)
            .where(
                SubmissionRow.notebook == clean_text(action.notebook),
                SubmissionRow.removed_at.is_(None),
                SubmissionRow.student_id.in_(
                    select(StudentRow.id).where(StudentRow.name.in_(sorted(students)))
                ),
            )
            .values(removed_at=_now())
        )
        try:
            with Session(self.engine) as session, session.begin():
                removed: int = session.execute(query).rowcount  # type: ignore[attr-defined]
                session.add(_action_row(action))
        except SQLAlchemyError as error:
            raise GradebookError(
                f"cannot remove from the gradebook {self.where}: {error}"
            ) from error
        return removed

    def actions(self) -> list[GradingAction]:
        """Every action kept, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ActionRow).order_by(ActionRow.id)).all()
            return [_action(row) for row in rows]

    def run_count(self) -> int:
        """How many runs the gradebook holds (history included)."""
        with Session(self.engine) as session:
            return session.scalar(select(func.count(RunRow.id))) or 0


def _refuse_missing_file(url: str) -> None:
    """GradebookError when `url` names a SQLite file that is not there."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL at all: opening it says so
        return
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not Path(database).exists():
            raise GradebookError(
                f"{database}: no gradebook here (`grader grade` makes one; name another with --db)"
            )


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise GradebookError(
            f"--db {url!r} is not a database URL or a file path: {error}"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver this package installs
    try:
        return create_engine(parsed)
    except (ArgumentError, ImportError) as error:
        raise GradebookError(f"cannot use the database {url!r}: {error}") from None


def migrate(engine: Engine) -> None:
    """Create the schema, or bring it up to the newest revision; refuse a foreign database."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    known = {script.revision for script in ScriptDirectory.from_config(alembic).walk_revisions()}
    exclusive = _exclusive_engine(engine)
    try:
        with exclusive.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            _refuse_foreign(tables, connection, known, describe(engine))
            alembic.attributes["connection"] = connection
            command.upgrade(alembic, "head")
    except SQLAlchemyError as error:
        raise GradebookError(f"cannot open the gradebook {describe(engine)}: {error}") from None
    finally:
        exclusive.dispose()


def _exclusive_engine(engine: Engine) -> Engine:
    """An engine on the same database whose transactions run one at a time across processes.

    Two graders opening a new gradebook at once would both create the tables ("table students
    already exists"): the migration holds SQLite's write lock (BEGIN IMMEDIATE, with pysqlite's
    own transaction handling off, as SQLAlchemy documents) or a PostgreSQL advisory lock from
    its first statement, so the second one waits and then finds the schema up to date.
    """
    exclusive = create_engine(engine.url)
    if exclusive.dialect.name == "sqlite":
        event.listen(exclusive, "connect", _without_implicit_transactions)
        event.listen(exclusive, "begin", _begin_immediate)
    elif exclusive.dialect.name == "postgresql":
        event.listen(exclusive, "begin", _take_schema_lock)
    return exclusive


def _without_implicit_transactions(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite then emits no BEGIN (nor COMMIT) itself


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _take_schema_lock(connection: Connection) -> None:
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")


def describe(engine: Engine) -> str:
    """The database's URL, without its password."""
    return engine.url.render_as_string(hide_password=True)


def _refuse_foreign(tables: set[str], connection: Any, known: set[str], where: str) -> None:
    if tables and "alembic_version" not in tables:
        raise GradebookError(
            f"{where} already holds tables ({', '.join(sorted(tables))}) but is not a gradebook; "
            "give --db a new file or an empty database"
        )
    if "alembic_version" in tables:
        revisions = {
            row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
        }
        unknown = revisions - known
        if unknown:
            raise GradebookError(
                f"{where} was written by a newer grader (schema revision {', '.join(unknown)}); "
                "upgrade the grader to read it"
            )


def _submission_row(
    session: Session, submission: Submission, answers: tuple[Answer, ...]
) -> SubmissionRow:
    name = clean_text(submission.student)
    student = session.scalar(select(StudentRow).where(StudentRow.name == name))
    if student is None:
        student = StudentRow(name=name)
        session.add(student)
        session.flush()
    row = session.scalar(
        select(SubmissionRow).where(
            SubmissionRow.student_id == student.id,
            SubmissionRow.notebook == clean_text(submission.exercise),
            SubmissionRow.sha256 == submission.sha256,
        )
    )
    if row is not None and row.removed_at is not None:
        row.removed_at = None  # graded again after `grader remove`: it counts again
    if row is None:
        row = SubmissionRow(
            student_id=student.id,
            notebook=clean_text(submission.exercise),
            file=clean_text(submission.file),
            sha256=submission.sha256,
            submitted_at=submission.submitted_at,
            received_at=_now(),
            lms_late=submission.lms_late,
            answers=[
                AnswerRow(grade_id=clean_text(a.grade_id), source=clean_text(a.source))
                for a in answers
            ],
        )
        session.add(row)
        session.flush()
    return row


def _run_row(
    submission_id: int, result: NotebookResult, grader_version: str, course_version: str
) -> RunRow:
    return RunRow(
        submission_id=submission_id,
        graded_at=_now(),
        grader_version=grader_version,
        course_version=course_version,
        device=result.device,
        isolation=clean_text(result.isolation),
        seeds=list(result.seeds),
        seconds=result.seconds,
        score=result.score,
        max_score=result.max_score,
        error=clean_message(result.error),
        notices=[clean_message(notice) for notice in result.notices],
        figures=[figure_to_json(figure) for figure in result.figures],
        checks=[
            CheckRow(
                position=position,
                grade_id=clean_text(check.grade_id),
                name=clean_text(check.name),
                points=check.points,
                score=check.score,
                status=check.status,
                message=clean_message(check.message),
                hidden_message=clean_message(check.hidden_message),
            )
            for position, check in enumerate(result.checks)
        ],
    )


def _action_row(action: GradingAction) -> ActionRow:
    return ActionRow(
        student=clean_text(action.student),
        notebook=clean_text(action.notebook),
        target=clean_text(action.target),
        kind=action.kind,
        score=action.score,
        text=clean_message(action.text),
        by=clean_text(action.by),
        at=action.at,
    )


def _action(row: ActionRow) -> GradingAction:
    kind: ActionKind = row.kind  # type: ignore[assignment]  # only this module writes kinds
    return GradingAction(
        row.student, row.notebook, kind, row.target, row.score, row.text, row.by, row.at
    )


def _latest_runs(session: Session, submission_ids: list[int]) -> dict[int, RunRow]:
    latest: dict[int, RunRow] = {}
    for chunk in _chunks(submission_ids, 500):
        query = select(RunRow).where(RunRow.submission_id.in_(chunk)).order_by(RunRow.id)
        for run in session.scalars(query):
            latest[run.submission_id] = run
    return latest


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _graded(submission: SubmissionRow, run: RunRow) -> GradedNotebook:
    result = NotebookResult(
        notebook=submission.notebook,
        path=submission.file,
        checks=tuple(
            CheckResult(
                submission.notebook,
                c.grade_id,
                c.name,
                c.points,
                c.score,
                c.status,
                c.message,
                c.hidden_message,
            )
            for c in run.checks
        ),
        notices=tuple(run.notices),
        seconds=run.seconds,
        device=run.device,
        isolation=run.isolation,
        error=run.error,
        seeds=tuple(run.seeds),
        answers=tuple(Answer(a.grade_id, a.source) for a in submission.answers),
        figures=tuple(figure_from_json(figure) for figure in run.figures),
    )
    return GradedNotebook(
        student=submission.student.name,
        file=submission.file,
        sha256=submission.sha256,
        submitted_at=submission.submitted_at,
        graded_at=run.graded_at,
        grader_version=run.grader_version,
        result=result,
        lms_late=submission.lms_late,
    )


def figure_to_json(figure: Figure) -> dict[str, Any]:
    """A figure as JSON any database accepts (no NaN: missing points become null)."""
    return {
        "grade_id": clean_text(figure.grade_id),
        "title": clean_text(figure.title),
        "xlabel": clean_text(figure.xlabel),
        "ylabel": clean_text(figure.ylabel),
        "log_y": figure.log_y,
        "missing": clean_message(figure.missing),
        "series": [
            {"label": clean_text(s.label), "style": s.style, "x": _nulls(s.x), "y": _nulls(s.y)}
            for s in figure.series
        ],
    }


def figure_from_json(data: dict[str, Any]) -> Figure:
    """The inverse of `figure_to_json`."""
    series = tuple(
        Series(s["label"], _nans(s["x"]), _nans(s["y"]), s["style"]) for s in data["series"]
    )
    return Figure(
        data["grade_id"], data["title"], data["xlabel"], data["ylabel"], series,
        bool(data["log_y"]), data["missing"],
    )  # fmt: skip


def _nulls(values: Iterable[float]) -> list[float | None]:
    return [value if math.isfinite(value) else None for value in values]


def _nans(values: Iterable[float | None]) -> tuple[float, ...]:
    return tuple(math.nan if value is None else float(value) for value in values)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
