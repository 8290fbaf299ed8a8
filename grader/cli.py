"""The `grader` command: parse, call the library, print, and map failures to exit codes.

Exit status: 0 every check passed, 1 some check lost points, 2 the grader could not do its job.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from grader.config import Config, load_config
from grader.errors import GraderError
from grader.results import NotebookResult

EXIT_PASSED, EXIT_LOST_POINTS, EXIT_GRADER_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed the usage error or the help
        return int(exit_request.code or 0)
    try:
        config = load_config(
            args.course,
            device=getattr(args, "device", None),
            cell_timeout=getattr(args, "cell_timeout", None),
            notebook_timeout=getattr(args, "notebook_timeout", None),
        )
        status: int = args.command(args, config)
        return status
    except GraderError as error:
        print(f"grader: error: {error}", file=sys.stderr)
        return EXIT_GRADER_ERROR
    except KeyboardInterrupt:
        print("grader: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__)
    parser.add_argument(
        "--course", type=Path, default=None, help="the course folder (default: found from here)"
    )
    commands = parser.add_subparsers(title="commands", required=True)

    check = commands.add_parser("check", help="grade notebooks and print a score per check")
    check.add_argument(
        "paths", nargs="*", type=Path, help="notebooks or folders (default: exercises/)"
    )
    check.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    check.add_argument("--json", type=Path, help="write Gradescope results.json here")
    check.add_argument("--junit", type=Path, help="write JUnit XML here")
    check.add_argument(
        "--workers", type=int, default=None, help="notebooks graded at once (default: cores)"
    )
    check.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell")
    check.add_argument("--notebook-timeout", type=float, default=None, help="seconds per run")
    check.set_defaults(command=_check)

    assign = commands.add_parser("assign", help="write exercises/ from solutions/")
    assign.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if exercises/ is out of date"
    )
    assign.set_defaults(command=_assign)
    return parser


def _check(args: argparse.Namespace, config: Config) -> int:
    from grader.grading import check_notebooks
    from grader.report import gradescope_results, junit_xml, render_text, write_json
    from grader.results import all_passed, ungradable

    started = time.monotonic()
    paths = args.paths or [config.path(config.exercises_dir)]
    if args.workers is not None and args.workers < 1:
        raise GraderError("--workers must be at least 1")
    results = check_notebooks(paths, config, args.workers, _progress_line())
    print(render_text(results), end="")
    if args.json:
        write_json(args.json, gradescope_results(results, time.monotonic() - started))
    if args.junit:
        args.junit.write_text(junit_xml(results), encoding="utf-8")
    for result in ungradable(results):
        print(f"grader: error: {result.error}", file=sys.stderr)
    if ungradable(results):
        return EXIT_GRADER_ERROR
    return EXIT_PASSED if all_passed(results) else EXIT_LOST_POINTS


def _progress_line() -> Callable[[NotebookResult], None] | None:
    """On a terminal, a line on stderr as each notebook is graded; elsewhere nothing."""
    if not sys.stderr.isatty():
        return None
    done = 0

    def show(result: NotebookResult) -> None:
        nonlocal done
        done += 1
        score = "error" if result.error else f"{result.score:g}/{result.max_score:g}"
        print(
            f"  graded {result.notebook} ({result.path}): {score}  [{done} done]", file=sys.stderr
        )

    return show


def _assign(args: argparse.Namespace, config: Config) -> int:
    from grader.assign import assign

    changed = assign(config, check_only=args.check)
    for path in changed:
        verb = "out of date" if args.check else "wrote"
        print(f"{verb}: {path}")
    if not changed:
        print("exercises/ is up to date")
    return EXIT_LOST_POINTS if args.check and changed else EXIT_PASSED


if __name__ == "__main__":
    sys.exit(main())
