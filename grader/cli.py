"""The `grader` command: parse, call the library, print, and map failures to exit codes.

Exit status: 0 every check passed, 1 some check lost points (`grade`: some notebook could not be
graded), 2 the grader could not do its job, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from grader.config import (
    COURSE_ENV,
    HIDDEN_SEED_ENV,
    Config,
    hidden_secret,
    load_config,
    without_course,
)
from grader.errors import ClusterError, ConfigError, CourseNotFoundError, GraderError
from grader.results import NotebookResult
from grader.untrusted import clean_line, clean_message

if TYPE_CHECKING:
    from grader.runner import Runner
    from grader.submissions import Submission

EXIT_PASSED, EXIT_LOST_POINTS, EXIT_GRADER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
KIT_NOTE = "checked on the notebook's own data; the hidden variant is graded when you hand in"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed the usage error or the help
        return int(exit_request.code or 0)
    try:
        config = _course_config(args) if args.needs_course else Config()
        status: int = args.command(args, config)
        return status
    except GraderError as error:
        print(f"grader: error: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_GRADER_ERROR
    except KeyboardInterrupt:
        print("grader: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug of the grader's: never exit 1, which blames a student
        print(f"grader: internal error: {_internal_error(error, args.traceback)}", file=sys.stderr)
        return EXIT_GRADER_ERROR


def _internal_error(error: Exception, show_traceback: bool) -> str:
    """One line about a grader bug; its traceback is printed (`--traceback`) or kept in a log."""
    summary = _one_line(f"{type(error).__name__}: {error}")
    if show_traceback:
        traceback.print_exception(error, file=sys.stderr)
        return summary
    with tempfile.NamedTemporaryFile(
        "w", prefix="grader-internal-error-", suffix=".log", delete=False, encoding="utf-8"
    ) as log:
        traceback.print_exception(error, file=log)
    return f"{summary} (traceback in {log.name}; please report it)"


def _one_line(text: str, limit: int = 2000) -> str:
    """`text` as one clean line (`grader.untrusted`), cut: a message may carry a student's file
    name or error text."""
    return clean_message(clean_line(text), limit)


def run() -> NoReturn:
    """The `grader` command: `main`, then exit without dismantling the interpreter.

    When `main` returns, every file and the gradebook are written and closed and every kernel
    has ended; tearing down torch's modules at exit would add half a second to each command.
    SIGTERM (a cancelled CI job, `kill`) ends it as Ctrl-C does: what was graded stays recorded
    and nothing of the runs in progress is left behind.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said on it
            pass
    os._exit(status)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _course_config(args: argparse.Namespace) -> Config:
    """The configuration of the course, never found inside the work the command grades."""
    if getattr(args, "submissions", None) is not None:
        submitted = [args.submissions]
    else:  # `check`: a notebook's folder, or the folder given
        submitted = [path if path.is_dir() else path.parent for path in getattr(args, "paths", [])]
    return load_config(
        args.course,
        submitted=submitted,
        device=getattr(args, "device", None),
        cell_timeout=getattr(args, "cell_timeout", None),
        notebook_timeout=getattr(args, "notebook_timeout", None),
        cluster=getattr(args, "cluster", None),
    )


def _secured(config: Config) -> Config:
    """`config` with its hidden variant's secret read, saying so when it was just made."""
    made = config.hidden_seed is None and not config.path(config.secret_file).exists()
    config = dataclasses.replace(config, hidden_seed=hidden_secret(config))
    if made:
        print(
            f"grader: note: made a new secret for the hidden variants in "
            f"{config.path(config.secret_file)}; back it up (or set {HIDDEN_SEED_ENV}): "
            "without it, grades are drawn on other hidden variants",
            file=sys.stderr,
        )
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__)
    parser.add_argument(
        "--course",
        type=Path,
        default=None,
        help=f"the course folder (default: ${COURSE_ENV}, else found from here upwards)",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="print the traceback of an internal error"
    )
    parser.set_defaults(needs_course=True)
    commands = parser.add_subparsers(title="commands", required=True)

    check = commands.add_parser("check", help="grade notebooks and print a score per check")
    check.add_argument(
        "paths", nargs="*", type=Path, help="notebooks or folders (default: exercises/)"
    )
    check.add_argument("--json", type=Path, help="write Gradescope results.json here")
    check.add_argument("--junit", type=Path, help="write JUnit XML here")
    _execution_options(check)
    check.set_defaults(command=_check)

    grade = commands.add_parser("grade", help="grade a class into the gradebook")
    grade.add_argument(
        "submissions", type=Path, help="folder (or .zip) of <student>/<notebook>.ipynb or LMS files"
    )
    _database_option(grade)
    grade.add_argument(
        "--regrade", action="store_true", help="grade again what this grader already graded"
    )
    _execution_options(grade)
    grade.set_defaults(command=_grade)

    export = commands.add_parser(
        "export", help="write the gradebook as CSV, Canvas or Moodle imports, results.json, JUnit"
    )
    _database_option(export)
    export.add_argument(
        "--csv", type=Path, help="one row per student: checks, raw, penalty, override, totals"
    )
    export.add_argument("--canvas", type=Path, help="Canvas's gradebook import CSV")
    export.add_argument("--moodle", type=Path, help="Moodle's grade import CSV")
    export.add_argument(
        "--results-dir", type=Path, help="Gradescope results.json per student, in DIR/<student>/"
    )
    export.add_argument("--junit", type=Path, help="a test suite per student and notebook")
    export.set_defaults(command=_export, needs_course=False)

    roster = commands.add_parser("roster", help="the class list, from the LMS")
    roster_commands = roster.add_subparsers(title="roster commands", required=True)
    roster_import = roster_commands.add_parser(
        "import", help="make a Canvas, Moodle or id,name,email,section CSV the class roster"
    )
    roster_import.add_argument("file", type=Path, help="the CSV the LMS exported")
    _database_option(roster_import)
    roster_import.set_defaults(command=_roster_import, needs_course=False)

    feedback = commands.add_parser("feedback", help="write HTML feedback pages from the gradebook")
    _database_option(feedback)
    feedback.add_argument(
        "--out", type=Path, default=Path("feedback"), help="folder of the pages (default: feedback)"
    )
    feedback.set_defaults(command=_feedback, needs_course=False)

    gradescope = commands.add_parser(
        "gradescope", help="build a Gradescope autograder zip (references precomputed)"
    )
    gradescope.add_argument("out", type=Path, help="the zip to write")
    gradescope.add_argument(
        "notebooks", nargs="*", help="exercises it grades, by name (default: all of them)"
    )
    gradescope.set_defaults(command=_gradescope)

    assign = commands.add_parser("assign", help="write exercises/ from solutions/")
    assign.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if exercises/ is out of date"
    )
    assign.set_defaults(command=_assign)
    _manual_grading_commands(commands)

    release = commands.add_parser(
        "release", help="write the student kit: exercises, checks, public references, no answers"
    )
    release.add_argument("kit", type=Path, help="the new folder to write the kit into")
    release.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default=None,
        help="cpu: references for the cpu only; cuda or auto (where torch sees a GPU): for both",
    )
    release.set_defaults(command=_release)
    return parser


def _execution_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    command.add_argument(
        "--workers", type=int, default=None, help="notebooks graded at once (default: cores)"
    )
    command.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell")
    command.add_argument("--notebook-timeout", type=float, default=None, help="seconds per run")
    command.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="run the notebooks on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)",
    )


def _database_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--db",
        default=None,
        help="SQLAlchemy URL or SQLite file of the gradebook (default: gradebook.db here)",
    )


def _check(args: argparse.Namespace, config: Config) -> int:
    started = time.monotonic()
    workers = _workers(args)
    if not config.kit:  # a kit grades the public variant only: it has no secret, nor needs one
        config = _secured(config)
    with _runner(config, workers) as runner:  # first: its zygote's imports overlap the rest
        from grader.export import write_atomically, write_json_atomically
        from grader.grading import check_notebooks
        from grader.report import gradescope_results, junit_xml, render_text
        from grader.results import all_passed, ungradable

        paths = args.paths or [config.path(config.notebooks_dir or config.exercises_dir)]
        results = check_notebooks(paths, config, on_result=_progress_line(), runner=runner)
    if config.kit:
        print(f"note: {KIT_NOTE}\n")
    print(render_text(results), end="")
    if args.json:
        write_json_atomically(args.json, gradescope_results(results, time.monotonic() - started))
    if args.junit:
        write_atomically(args.junit, junit_xml(results))
    for result in ungradable(results):
        print(f"grader: error: {_one_line(result.error)}", file=sys.stderr)
    if ungradable(results):
        return EXIT_GRADER_ERROR
    return EXIT_PASSED if all_passed(results) else EXIT_LOST_POINTS


def _workers(args: argparse.Namespace) -> int | None:
    if args.workers is not None and args.workers < 1:
        raise GraderError("--workers must be at least 1")
    workers: int | None = args.workers
    return workers


def _runner(config: Config, workers: int | None) -> Runner:
    """Where the runs go: the Dask cluster of `--cluster` (`cluster` in [tool.grader]), else
    this machine."""
    from grader.runner import LocalRunner

    if not config.cluster:
        return LocalRunner(workers)
    if workers is not None:
        raise ConfigError(
            "--workers is for grading on this machine; on a cluster each worker runs as many "
            "notebooks at once as its `dask worker --nthreads`"
        )
    try:
        from grader.cluster import DaskRunner
    except ModuleNotFoundError as error:
        if error.name not in ("distributed", "dask"):
            raise
        raise ClusterError(
            "--cluster needs Dask's distributed here: pip install 'autodiff-grader[cluster]'"
        ) from None
    return DaskRunner(config.cluster)


def _grade(args: argparse.Namespace, config: Config) -> int:
    workers = _workers(args)
    if config.kit:
        raise GraderError(f"{config.root} is a student kit: grade a class from the course's folder")
    config = _secured(config)
    with _progress_display(sys.stderr) as progress:  # first: it shows the warm-up too
        progress.stage(
            f"warming up: connecting to the Dask cluster at {config.cluster}"
            if config.cluster
            else "warming up: the kernel zygote is importing torch"
        )
        with _runner(config, workers) as runner:  # first: its zygote's imports overlap the rest
            from grader.batch import grade_class
            from grader.gradebook import Gradebook

            progress.stage("warming up: opening the gradebook")
            with Gradebook(args.db) as gradebook:
                summary = grade_class(
                    args.submissions,
                    config,
                    gradebook,
                    regrade=args.regrade,
                    progress=progress,
                    runner=runner,
                )
    for problem in summary.problems:
        print(f"not graded: {_one_line(problem)}", file=sys.stderr)
    for line in summary.unmatched:
        print(f"no student: {_one_line(line)}", file=sys.stderr)
    for line in summary.duplicates:
        print(f"copy: {_one_line(line)}", file=sys.stderr)
    unmatched = f", {len(summary.unmatched)} matched to no student" if summary.unmatched else ""
    print(
        f"{summary.collected} notebook(s) found, {summary.recorded} graded and recorded, "
        f"{summary.skipped} already graded (use --regrade to grade them again){unmatched}; "
        f"gradebook: {gradebook.where}"
    )
    if summary.interrupted:
        print("grader: interrupted; run the same command again to grade the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_LOST_POINTS if summary.problems or summary.unmatched else EXIT_PASSED


def _progress_display(stream: TextIO) -> _ProgressBar | _ProgressLines:
    """A live bar on a terminal; elsewhere (a pipe, a log, CI) plain lines."""
    return _ProgressBar(stream) if stream.isatty() else _ProgressLines(stream)


def _graded_line(submission: Submission, result: NotebookResult) -> str:
    score = "not graded" if result.error else f"{result.score:g}/{result.max_score:g}"
    return f"{clean_line(submission.student)}/{clean_line(result.notebook)}: {score}"


class _ProgressBar:
    """A tqdm bar on a terminal: what is warming up, then done/total, rate and time left.

    Until the first notebook is graded the bar is redrawn twice a second, so that its clock
    runs while kernels start and references run, instead of sitting at 0 without a word.
    """

    def __init__(self, stream: TextIO) -> None:
        from tqdm import tqdm

        self.bar: Any = tqdm(total=None, unit="notebook", file=stream, desc="warming up")
        self._warm = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="grader-progress", daemon=True)

    def __enter__(self) -> _ProgressBar:
        self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._warm.wait(0.5):
            self.bar.refresh()

    def stage(self, text: str) -> None:
        self.bar.set_description_str(text)

    def start(self, total: int) -> None:
        self.bar.reset(total=total)

    def advance(self, submission: Submission, result: NotebookResult) -> None:
        if not self._warm.is_set():
            self._warm.set()
            self.bar.set_description_str("grading")
        self.bar.set_postfix_str(_graded_line(submission, result))
        self.bar.update(1)

    def __exit__(self, *exc: object) -> None:
        self._warm.set()
        self._ticker.join()
        self.bar.close()


class _ProgressLines:
    """Without a terminal: one plain line per stage and per graded notebook, flushed at once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.total = 0
        self.done = 0
        self.started = time.monotonic()

    def __enter__(self) -> _ProgressLines:
        return self

    def _say(self, text: str) -> None:
        try:
            print(f"grader: {text}", file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed pipe: progress is not worth stopping for
            pass

    def stage(self, text: str) -> None:
        self._say(text)

    def start(self, total: int) -> None:
        self.total = total
        self._say(f"{total} notebook(s) to grade")

    def advance(self, submission: Submission, result: NotebookResult) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        self._say(
            f"[{self.done}/{self.total}] {_graded_line(submission, result)} ({elapsed:.0f} s)"
        )

    def __exit__(self, *exc: object) -> None:
        pass


def _export(args: argparse.Namespace, config: Config) -> int:
    from grader.export import (
        class_grades,
        off_roster,
        write_canvas,
        write_csv,
        write_junit,
        write_moodle,
        write_results_json,
    )
    from grader.gradebook import Gradebook

    if not (args.csv or args.canvas or args.moodle or args.results_dir or args.junit):
        raise GraderError(
            "say what to export: --csv FILE, --canvas FILE, --moodle FILE, --results-dir DIR "
            "and/or --junit FILE"
        )
    config = _course_if_any(args)
    with Gradebook(args.db, create=False) as gradebook:
        grades = class_grades(gradebook, config)
    for student in off_roster(grades.graded, grades.roster):
        print(f"not on the roster: {clean_line(student)}", file=sys.stderr)
    writers: list[tuple[Path | None, Callable[[Path], object]]] = [
        (args.csv, lambda path: write_csv(grades, path)),
        (args.canvas, lambda path: write_canvas(grades, path, config)),
        (args.moodle, lambda path: write_moodle(grades, path)),
        (args.junit, lambda path: write_junit(grades, path)),
    ]
    for target, write in writers:
        if target:
            write(target)
            print(f"wrote {target}")
    if args.results_dir:
        written = write_results_json(grades, args.results_dir)
        print(f"wrote {len(written)} results.json file(s) under {args.results_dir}")
    return EXIT_PASSED


def _roster_import(args: argparse.Namespace, config: Config) -> int:
    from grader.gradebook import Gradebook
    from grader.roster import read_roster

    kind, entries = read_roster(args.file)
    with Gradebook(args.db) as gradebook:
        gradebook.import_roster(entries)
    print(f"{len(entries)} student(s) in the roster ({kind} format); gradebook: {gradebook.where}")
    return EXIT_PASSED


def _feedback(args: argparse.Namespace, config: Config) -> int:
    from grader.feedback import write_feedback
    from grader.gradebook import Gradebook
    from grader.roster import match_roster

    config = _course_if_any(args)
    with Gradebook(args.db, create=False) as gradebook:
        roster = gradebook.roster()
        graded = match_roster(gradebook.latest(), roster)
        actions = gradebook.actions()
    pages = write_feedback(graded, args.out, _course_templates(config), roster, actions, config)
    print(f"wrote {len(pages)} page(s) under {args.out}; class summary: {args.out / 'index.html'}")
    return EXIT_PASSED


def _course_if_any(args: argparse.Namespace) -> Config:
    """The course named or found here; without one, the defaults (pages, exports and manual
    grades need no course: they then know the notebooks from the gradebook alone)."""
    try:
        return load_config(args.course)
    except CourseNotFoundError:
        if args.course is not None or os.environ.get(COURSE_ENV):
            raise  # a course was named: a wrong name is an error, not the packaged pages
        return without_course()


def _course_templates(config: Config) -> Path | None:
    return config.path(config.templates_dir) if config.templates_dir else None


def _progress_line() -> Callable[[NotebookResult], None]:
    """A line on stderr as each notebook is graded, flushed at once: on a terminal, and in a
    log or CI, where a long `check` would otherwise say nothing until its table."""
    done = 0

    def show(result: NotebookResult) -> None:
        nonlocal done
        done += 1
        score = "error" if result.error else f"{result.score:g}/{result.max_score:g}"
        line = f"  graded {_one_line(result.notebook)} ({_one_line(result.path)}): {score}"
        try:
            print(f"{line}  [{done} done]", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # a closed pipe: progress is not worth stopping for
            pass

    return show


def _gradescope(args: argparse.Namespace, config: Config) -> int:
    from grader.gradescope import build_autograder

    config = _secured(config)
    names = [Path(name).stem for name in args.notebooks]  # `01_x.ipynb` names `01_x` too
    chosen = build_autograder(config, args.out, names)
    print(
        f"wrote {args.out}: a Gradescope autograder for {', '.join(chosen)} "
        "(both variants' references precomputed on the CPU; no solutions, no secret)"
    )
    return EXIT_PASSED


def _assign(args: argparse.Namespace, config: Config) -> int:
    from grader.assign import assign

    changed = assign(config, check_only=args.check)
    for path in changed:
        verb = "out of date" if args.check else "wrote"
        print(f"{verb}: {path}")
    if not changed:
        print("exercises/ is up to date")
    return EXIT_LOST_POINTS if args.check and changed else EXIT_PASSED


# --- manual grading: override, excuse, comment, remove, history ---
_Done = TypeVar("_Done")


def _manual_grading_commands(commands: Any) -> None:
    override = _manual_command(commands, "override", "set a notebook's or a check's score by hand")
    override.add_argument("check", nargs="?", default="", help="one check (default: the notebook)")
    score = override.add_mutually_exclusive_group(required=True)
    score.add_argument("--score", type=float, help="the score that replaces the autograder's")
    score.add_argument("--clear", action="store_true", help="take the override back")
    override.add_argument("--reason", required=True, help="why, for the history")
    override.set_defaults(command=_override)
    excuse = _manual_command(commands, "excuse", "excuse a student from a notebook")
    excuse.add_argument("--undo", action="store_true", help="take the excuse back")
    excuse.add_argument("--reason", required=True, help="why, for the history")
    excuse.set_defaults(command=_excuse)
    comment = _manual_command(commands, "comment", "comment on a notebook, a check or a TO DO cell")
    comment.add_argument("target", nargs="?", default="", help="a check or a TO DO cell's grade id")
    comment.add_argument("--text", required=True, help="the comment the student reads")
    comment.set_defaults(command=_comment)
    remove = _manual_command(commands, "remove", "take a submission recorded by mistake out")
    remove.add_argument("--reason", required=True, help="why, for the history")
    remove.set_defaults(command=_remove)
    history = commands.add_parser("history", help="every manual grading action: who, when, why")
    _database_option(history)
    history.set_defaults(command=_history, needs_course=False)


def _manual_command(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=text)
    command.add_argument("student", help="the student's roster id (or key in the gradebook)")
    command.add_argument("notebook", help="the notebook")
    command.add_argument("--by", help="who acts (default: $USER)")
    _database_option(command)
    command.set_defaults(needs_course=False)
    return command


def _act(args: argparse.Namespace, act: Callable[..., _Done], **action: Any) -> _Done:
    """`act(gradebook, class record, GradingAction(...))` on the gradebook `--db` names."""
    from grader.gradebook import Gradebook, GradingAction
    from grader.manual import acting_user, class_record

    with Gradebook(args.db, create=False) as gradebook:
        record = class_record(gradebook, _course_if_any(args))
        by = acting_user(args.by)
        return act(gradebook, record, GradingAction(args.student, args.notebook, by=by, **action))


def _override(args: argparse.Namespace, config: Config) -> int:
    from grader.manual import override

    score = None if args.clear else args.score
    _act(args, override, kind="override", target=args.check, score=score, text=args.reason)
    what = f"{args.notebook} {args.check}".strip()
    done = "override taken back" if args.clear else f"now {args.score:g} (overridden)"
    print(f"{clean_line(args.student)} {clean_line(what)}: {done}")
    return EXIT_PASSED


def _excuse(args: argparse.Namespace, config: Config) -> int:
    from grader.manual import excuse

    _act(args, excuse, kind="unexcuse" if args.undo else "excuse", text=args.reason)
    state = "no longer excused" if args.undo else "excused"
    print(f"{clean_line(args.student)} {clean_line(args.notebook)}: {state}")
    return EXIT_PASSED


def _comment(args: argparse.Namespace, config: Config) -> int:
    from grader.manual import comment

    _act(args, comment, kind="comment", target=args.target, text=args.text)
    print(f"{clean_line(args.student)} {clean_line(args.notebook)}: comment kept")
    return EXIT_PASSED


def _remove(args: argparse.Namespace, config: Config) -> int:
    from grader.manual import remove

    removed = _act(args, remove, kind="remove", text=args.reason)
    print(
        f"{clean_line(args.student)} {clean_line(args.notebook)}: {removed} submission(s) "
        "taken out of the grades (grading them again brings them back)"
    )
    return EXIT_PASSED


def _history(args: argparse.Namespace, config: Config) -> int:
    from grader.gradebook import Gradebook

    with Gradebook(args.db, create=False) as gradebook:
        actions = gradebook.actions()
    for action in actions:
        score = "" if action.score is None else f" {action.score:g}"
        where = " ".join(part for part in (action.notebook, action.target) if part)
        print(
            _one_line(f"{action.at:%Y-%m-%d %H:%M} UTC {action.by}: {action.kind} "
                      f"{action.student} {where}{score}: {action.text}")
        )  # fmt: skip
    return EXIT_PASSED


def _release(args: argparse.Namespace, config: Config) -> int:
    from grader.release import release

    if config.kit:
        raise GraderError(f"{config.root} is a student kit: release from the course's folder")
    kit = release(config, args.kit)
    print(
        f"wrote the student kit of {len(kit.exercises)} notebook(s) to {kit.root}, with "
        f"reference results for {' and '.join(kit.devices)}; no solutions, no secret"
    )
    return EXIT_PASSED


if __name__ == "__main__":
    run()
