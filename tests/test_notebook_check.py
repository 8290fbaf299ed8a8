"""`check()` in a notebook: where it finds the notebook's file, what it says, and a real kernel."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import nbformat
import pytest
from nbclient import NotebookClient

from grader.cli import KIT_NOTE
from grader.config import Config
from grader.engine.jail import kernel_environment
from grader.notebook_check import NotebookNotFoundError, check, find_notebook, unsaved_warning
from grader.release import release
from tests.conftest import mini_solution, write


@pytest.fixture
def notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # no server running
    return write(mini_solution(), tmp_path, "01_mini")


@pytest.mark.parametrize(
    ("namespace", "environ"),
    [
        ({"__vsc_ipynb_file__": "ABSOLUTE"}, {}),  # VS Code
        ({"__session__": "01_mini.ipynb"}, {}),  # Jupyter Server, a name relative to here
        ({}, {"JPY_SESSION_NAME": "ABSOLUTE"}),
        ({"__vsc_ipynb_file__": "gone.ipynb", "__session__": "ABSOLUTE"}, {}),
    ],
)
def test_the_notebook_is_found_where_jupyter_and_vs_code_say(
    notebook: Path, namespace: dict[str, str], environ: dict[str, str]
) -> None:
    def told(mapping: dict[str, str]) -> dict[str, str]:
        return {k: str(notebook) if v == "ABSOLUTE" else v for k, v in mapping.items()}

    assert find_notebook(told(namespace), told(environ)) == notebook.resolve()


def test_a_notebook_nobody_names_is_an_error_saying_how_to_name_it(notebook: Path) -> None:
    with pytest.raises(NotebookNotFoundError, match=r"cannot tell which notebook.*check\('"):
        find_notebook({"__session__": "not-a-notebook.txt"}, {})


class _Sessions(BaseHTTPRequestHandler):
    """A Jupyter server's sessions API, as old servers (no JPY_SESSION_NAME) answer it."""

    sessions: ClassVar[list[object]] = []

    def do_GET(self) -> None:
        ok = self.path == "/api/sessions" and self.headers["Authorization"] == "token secret"
        body = json.dumps(self.sessions if ok else {"message": "Forbidden"}).encode()
        self.send_response(200 if ok else 403)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(notebook: Path) -> Iterator[None]:
    httpd = HTTPServer(("127.0.0.1", 0), _Sessions)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    runtime.mkdir()
    url = f"http://127.0.0.1:{httpd.server_port}/"
    info = {"url": url, "token": "secret", "root_dir": str(notebook.parent)}
    (runtime / "jpserver-1.json").write_text(json.dumps(info), encoding="utf-8")
    (runtime / "jpserver-2.json").write_text("not json", encoding="utf-8")
    _Sessions.sessions = [
        "hostile",
        {"kernel": {"id": "other"}, "path": "elsewhere.ipynb"},
        {"kernel": {"id": "k-1"}, "path": notebook.name},
    ]
    yield
    httpd.shutdown()
    httpd.server_close()


def test_an_older_server_is_asked_for_the_session_of_this_kernel(
    notebook: Path, server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("grader.notebook_check._kernel_id", lambda: "k-1")
    assert find_notebook({}, {}) == notebook.resolve()
    monkeypatch.setattr("grader.notebook_check._kernel_id", lambda: "k-2")
    with pytest.raises(NotebookNotFoundError):
        find_notebook({}, {})


def test_code_run_but_not_in_the_saved_file_is_called_unsaved(notebook: Path) -> None:
    assert unsaved_warning(notebook, ["", "import math", "between = 1\n"]) == ""
    warning = unsaved_warning(notebook, ["answer = 42  # typed since", "check()"])
    assert "changes that are not saved" in warning and "the SAVED file 01_mini.ipynb" in warning


@pytest.mark.slow
def test_check_in_a_kernel_prints_the_reports_of_grader_check(
    mini_course: Config, tmp_path: Path
) -> None:
    kit = release(mini_course, tmp_path / "kit").root
    nb = mini_solution()
    nb.cells.append(nbformat.v4.new_code_cell("from grader import check; check()"))
    path = write(nb, kit / "notebooks", "01_mini")
    nb.cells.insert(-1, nbformat.v4.new_code_cell("typed_after_saving = 1"))
    nb.cells.append(
        nbformat.v4.new_code_cell('del __session__; os.environ.pop("JPY_SESSION_NAME"); check()')
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os"))
    environ = {
        k: v for k, v in os.environ.items() if k not in ("GRADER_HIDDEN_SEED", "GRADER_COURSE")
    }
    environ.update(JPY_SESSION_NAME=str(path), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=environ)
    found, lost = ("".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells[-2:])
    assert found.startswith("grader: warning: the notebook has changes that are not saved")
    assert f"note: {KIT_NOTE}" in found
    assert "score 2/2" in found and "TOTAL 2/2 points in 1 notebook(s)" in found
    assert lost.startswith("grader: cannot tell which notebook this is")
    assert not (kit / ".grader-secret").exists()


def test_check_left_in_a_notebook_does_nothing_while_the_grader_runs_it(
    notebook: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def graded_again(*_args: object) -> str:
        raise AssertionError("check() ran grader check from inside a graded run")

    monkeypatch.setattr("grader.notebook_check.run_check", graded_again)
    for name, value in kernel_environment(notebook.parent, threads=1).items():
        monkeypatch.setenv(name, value)
    check(notebook)
    assert (
        capsys.readouterr().out
        == "grader: check() does nothing while the grader runs this notebook\n"
    )
