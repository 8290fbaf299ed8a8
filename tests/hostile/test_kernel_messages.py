"""Hostile kernel messages: whatever a cell makes its kernel send (the kernel knows the
connection key, so it can forge anything on its own channels) costs at most that cell, with a
message that says what was refused, and the grader's memory stays bounded (see conftest for
what must be left behind: nothing)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from grader import kernel_messages
from grader.config import Config
from tests.conftest import submission
from tests.hostile.conftest import grade, messages

pytestmark = pytest.mark.slow

KERNEL = "k = get_ipython().kernel\nparent = k.get_parent()\n"
IOPUB = KERNEL + "k.session.send(k.iopub_socket, {!r}, {!r}, parent=parent)\n"
SHELL = KERNEL + (
    "k.session.send(k.shell_stream, {!r}, {!r}, parent=parent, ident=k._parent_ident['shell'])\n"
)
# Frames signed with the kernel's own key, sent past its session: the header and the content
# are expressions of their bytes.
RAW = KERNEL + (
    "parts = [{}, k.session.pack(parent), b'{{}}', {}]\n"
    "k.iopub_socket.send_multipart([b'topic', b'<IDS|MSG>', k.session.sign(parts), *parts])\n"
)
HEADER = "k.session.pack({'msg_id': 'forged', 'msg_type': 'stream', 'session': k.session.session})"
WIDGET = {"comm_id": "c", "target_name": "jupyter.widget", "data": {"state": {"a": 1}}}

REFUSED_CELLS = {
    "comm_open": (IOPUB.format("comm_open", WIDGET), "type `comm_open`"),
    "comm_msg_widget_state": (IOPUB.format("comm_msg", WIDGET), "type `comm_msg`"),
    "unknown_type": (IOPUB.format("grader_pwned", {}), "type `grader_pwned`"),
    "input_request_on_iopub": (IOPUB.format("input_request", {"prompt": "?"}), "input_request"),
    "missing_keys": (IOPUB.format("stream", {"name": "stdout"}), "without a valid `text`"),
    "wrong_types": (IOPUB.format("error", {"ename": 1, "evalue": 2}), "without a valid `ename`"),
    "non_dict_content": (RAW.format(HEADER, "b'[1, 2]'"), "not JSON objects"),
    "forged_reply_content": (SHELL.format("execute_reply", {"status": "won"}), "valid `status`"),
    "comm_on_shell": (SHELL.format("comm_open", WIDGET), "type `comm_open`"),
    "bad_signature": (
        KERNEL + "k.iopub_socket.send_multipart([b't', b'<IDS|MSG>', b'0' * 64] + [b'{}'] * 4)",
        "wrong signature",
    ),
    "raw_garbage": (KERNEL + "k.iopub_socket.send_multipart([b'\\xff' * 10])", "delimiter"),
    "many_parts": (KERNEL + "k.iopub_socket.send_multipart([b'x'] * 10_000)", "more than 8 parts"),
    "deep_json": (RAW.format(HEADER, "b'[' * 100_000"), "not JSON"),
    "header_not_a_dict": (RAW.format("b'[]'", "b'{}'"), "not JSON objects"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CELLS))
def test_a_refused_message_costs_its_cell_with_a_message(
    mini_course: Config, tmp_path: Path, case: str
) -> None:
    source, fragment = REFUSED_CELLS[case]
    hostile = submission(tmp_path / "a", f"{source}\nanswer = 21 * scale")
    clean = submission(tmp_path / "b", "answer = 21 * scale", name="02_mini")
    first, second = grade(mini_course, hostile, clean)
    assert set(messages(first)) == {"first"}, messages(first)
    assert "KernelMessageRefused: the kernel sent a" in messages(first)["first"]
    assert fragment in messages(first)["first"], messages(first)
    assert first.score == 1 and second.score == second.max_score == 2


HARMLESS_CELLS = {
    "status_of_other_requests": IOPUB.format("status", {"execution_state": "idle"}).replace(
        "parent=parent", "parent={'msg_id': 'other'}"
    ),
    "execute_reply_of_other_requests": SHELL.format("execute_reply", {"status": "ok"}).replace(
        "parent=parent", "parent={'msg_id': 'other'}"
    ),
    "display_id_storm": (
        "from IPython.display import display, update_display, clear_output\n"
        "for i in range(2000):\n    display(i, display_id=f'id{i}')\n"
        "    update_display(i + 1, display_id=f'id{i}')\n    clear_output(wait=i % 2 == 0)"
    ),
    "transient_junk": IOPUB.format(
        "display_data", {"data": {}, "metadata": {}, "transient": {"display_id": [1] * 1000}}
    ),
    "huge_frame": KERNEL + "k.iopub_socket.send_multipart([b'topic', b'\\0' * 300_000_000])",
    "stdin_messages": KERNEL + "k.session.send(k.stdin_socket, 'input_request', {}, ident=b'x')",
}


@pytest.mark.parametrize("case", sorted(HARMLESS_CELLS))
def test_messages_the_grader_can_ignore_cost_nothing(
    mini_course: Config, tmp_path: Path, case: str
) -> None:
    patient = dataclasses.replace(mini_course, cell_timeout=30)
    (result,) = grade(patient, submission(tmp_path, f"{HARMLESS_CELLS[case]}\nanswer = 21 * scale"))
    assert result.score == result.max_score, messages(result)


def test_a_flood_of_messages_is_stopped(
    mini_course: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_messages, "MAX_MESSAGES_PER_CELL", 500)
    flood = IOPUB.format("status", {"execution_state": "busy"})
    flood = flood.replace("k.session.send", "while True:\n    k.session.send")
    first, second = grade(
        mini_course, submission(tmp_path / "a", flood), submission(tmp_path / "b", "answer = 1")
    )
    assert "more than 500 messages in one cell" in messages(first)["first"]
    assert set(messages(second)) == {"first"}  # graded as ever: a wrong answer, not a refusal


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """The growth of this process's resident memory over the block, sampled every 10 ms."""
    process, peak, done = psutil.Process(), [0], threading.Event()
    start = process.memory_info().rss

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss - start)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


# 1000 widget updates of 1 MB each, which nbclient would keep as widget state (1 GB).
WIDGET_FLOOD = (
    IOPUB.replace("k.session.send", "for i in range(1000):\n    k.session.send")
    .format("comm_msg", {**WIDGET, "data": {"state": "STATE"}})
    .replace("'STATE'", "{f'key{i}': 'x' * 2**20}")
)


def test_the_graders_memory_stays_bounded_under_a_flood_of_widget_state(
    mini_course: Config, tmp_path: Path
) -> None:
    patient = dataclasses.replace(mini_course, cell_timeout=60)
    with peak_growth() as growth:
        (result,) = grade(patient, submission(tmp_path, WIDGET_FLOOD + "\nanswer = 21 * scale"))
    assert growth[0] < 300 * 2**20, f"the grader grew by {growth[0] // 2**20} MB"
    assert set(messages(result)) == {"first"}
    assert "type `comm_msg`" in messages(result)["first"]
