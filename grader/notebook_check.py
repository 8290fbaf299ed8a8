"""`check()` in a student's notebook: `grader check` on the saved notebook, shown in the cell.

The checks never run in the student's kernel: `check` finds the file of the notebook it is
called from, runs `python -m grader check FILE` in a new process (the real pipeline: the
notebook's own fresh kernel, sandboxed where the machine allows) and prints what that prints.
It grades the file as last saved, and says so when the notebook looks changed since.

Where the notebook's file is told to the kernel: VS Code sets `__vsc_ipynb_file__`; Jupyter
Server 2 sets `JPY_SESSION_NAME` (ipykernel copies it to `__session__`); older servers only
know it in their sessions API (`api/sessions`, found through the runtime folder's
`jpserver-*.json`/`nbserver-*.json`), matched by this kernel's id.

This module imports only the standard library at the top: it is imported in the kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SERVER_TIMEOUT = 2.0  # seconds to wait for a local Jupyter server's sessions API
NAMESPACE_NAMES = ("__vsc_ipynb_file__", "__session__")


class NotebookNotFoundError(Exception):
    """The notebook `check()` was called from cannot be found: name its file."""


def check(notebook: str | os.PathLike[str] | None = None, course: str | None = None) -> None:
    """Grade the saved notebook this is called from (or `notebook`) and print the report.

    Parameters
    ----------
    notebook
        The notebook's file, when it cannot be found by itself (the message says so).
    course
        The course or kit folder (default: `GRADER_COURSE`, else found above the notebook).
    """
    if os.environ.get("GRADER_GRADING"):  # engine.jail.GRADING_MARK: not imported, it is heavy
        print("grader: check() does nothing while the grader runs this notebook")
        return
    namespace = _user_namespace()
    try:
        path = Path(notebook) if notebook is not None else find_notebook(namespace)
    except NotebookNotFoundError as error:
        print(f"grader: {error}")
        return
    if not path.is_file():
        print(f"grader: {path} is not a file: save the notebook, or name it: check('NAME.ipynb')")
        return
    warning = unsaved_warning(path, _recent_inputs(namespace))
    if warning:
        print(f"grader: warning: {warning}")
    print(run_check(path, course), end="")


def find_notebook(namespace: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Path:
    """The file of the notebook whose kernel has `namespace`; NotebookNotFoundError if none."""
    for name in NAMESPACE_NAMES:
        found = _existing(namespace.get(name))
        if found is not None:
            return found
    found = _existing(environ.get("JPY_SESSION_NAME"))
    if found is not None:
        return found
    for found in _paths_from_servers(_kernel_id()):
        return found
    raise NotebookNotFoundError(
        "cannot tell which notebook this is (neither Jupyter nor VS Code said so to this "
        "kernel): save it and name its file, e.g. check('01_autograd_basics.ipynb')"
    )


def _existing(value: object) -> Path | None:
    """`value` as the path of an existing notebook, relative ones taken from here."""
    if not isinstance(value, str) or not value.endswith(".ipynb"):
        return None
    path = Path(value)
    for candidate in (path, Path.cwd() / path.name):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _kernel_id() -> str:
    """This kernel's id, from its connection file's name (`kernel-<id>.json`); "" outside one."""
    try:
        from ipykernel import get_connection_file

        name = Path(get_connection_file()).stem
    except Exception:  # not in an ipykernel, or one without a connection file
        return ""
    return name.removeprefix("kernel-")


def _paths_from_servers(kernel_id: str) -> Iterator[Path]:
    """The notebook of the session with `kernel_id` on each local Jupyter server that has one."""
    if not kernel_id:
        return
    for server in _running_servers():
        root = Path(server.get("root_dir") or server.get("notebook_dir") or ".")
        for session in _sessions(server):
            kernel = session.get("kernel") or {}
            path = session.get("path") or (session.get("notebook") or {}).get("path")
            if kernel.get("id") == kernel_id and isinstance(path, str):
                found = _existing(str(root / path))
                if found is not None:
                    yield found


def _running_servers() -> list[dict[str, Any]]:
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = Path(jupyter_runtime_dir())
    except Exception:  # no jupyter_core: no server to ask
        return []
    servers = []
    for info in sorted([*runtime.glob("jpserver-*.json"), *runtime.glob("nbserver-*.json")]):
        try:
            servers.append(json.loads(info.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return [server for server in servers if isinstance(server, dict) and "url" in server]


def _sessions(server: dict[str, Any]) -> list[dict[str, Any]]:
    """The sessions a local server lists; none when it does not answer."""
    url = str(server["url"]).rstrip("/") + "/api/sessions"
    request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token')}"})
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT) as response:
            sessions = json.loads(response.read())
    except (OSError, ValueError):
        return []
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def unsaved_warning(path: Path, recent_inputs: list[str], now: float | None = None) -> str:
    """Why the saved `path` may not be what the student sees, or "".

    The cell that called `check` and the one run before it are looked for in the saved file:
    code the kernel has run but the file does not hold was typed after the last save.
    """
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        sources = {_source(cell).strip() for cell in saved.get("cells", [])}
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return ""  # the grader itself says what is wrong with the file (not a notebook's JSON)
    if all(code.strip() in sources for code in recent_inputs if code.strip()):
        return ""
    age = (time.time() if now is None else now) - path.stat().st_mtime
    return (
        f"the notebook has changes that are not saved (last saved {age:.0f} s ago): the SAVED "
        f"file {path.name} is graded; save it (Ctrl-S) and run this cell again"
    )


def _source(cell: Any) -> str:
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(source) if isinstance(source, list) else str(source)


def run_check(path: Path, course: str | None = None) -> str:
    """What `python -m grader check path` prints: the report, then its error lines."""
    path = path.resolve()  # absolute: a file named `-x.ipynb` is no option to the command
    command = [sys.executable, "-m", "grader"]
    if course is not None:
        command += ["--course", str(Path(course).resolve())]
    command += ["check", str(path)]
    finished = subprocess.run(  # the notebook's folder: the course is found above it
        command, cwd=path.parent, capture_output=True, text=True, errors="replace", check=False
    )
    errors = [line for line in finished.stderr.splitlines() if line.startswith("grader:")]
    return finished.stdout + "".join(f"{line}\n" for line in errors)


def _user_namespace() -> dict[str, Any]:
    """The calling kernel's user namespace (`{}` outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return dict(shell.user_ns) if shell is not None else {}


def _recent_inputs(namespace: Mapping[str, Any]) -> list[str]:
    """The code of the cell that called `check` and of the one run before it (IPython's `_ih`)."""
    history = namespace.get("_ih")
    if not isinstance(history, list):
        return []
    return [code for code in history[-2:] if isinstance(code, str)]
