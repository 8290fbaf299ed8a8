"""The boundary of kernel messages: what it accepts, what it refuses, and that nothing a kernel
can send makes it (or nbclient behind it) raise anything but `MessageError`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.session import Session
from nbclient.exceptions import CellExecutionComplete
from nbformat.v4 import new_code_cell, new_notebook

from grader.execute import _BoundedClient
from grader.kernel_messages import (
    DELIMITER,
    IOPUB_CONTENT,
    MAX_FRAME_BYTES,
    QUEUED_MESSAGES,
    SHELL_CONTENT,
    MessageError,
    decode_message,
)
from grader.pool import _ReadyClient

SESSION = Session(key=b"the-connection-key")
PARENT = {"msg_id": "cell-1", "msg_type": "execute_request"}


def frames(msg_type: str, content: Any, parent: Any = PARENT, **parts: Any) -> list[bytes]:
    """A message as the kernel's session signs it, with a routing id in front."""
    message = SESSION.msg(msg_type, content, parent=parent)
    message.update(parts)
    return [b"kernel.topic", *SESSION.serialize(message)]


def signed(header: Any, parent: Any, metadata: Any, content: Any) -> list[bytes]:
    """Four JSON parts, whatever they hold, correctly signed (the kernel knows the key)."""
    parts = [json.dumps(part).encode() for part in (header, parent, metadata, content)]
    return [DELIMITER, SESSION.sign(parts), *parts]


VALID = {
    "stream": {"name": "stdout", "text": "hello\n"},
    "display_data": {"data": {"text/plain": "1"}, "metadata": {}, "transient": {"display_id": "a"}},
    "update_display_data": {"data": {}, "metadata": {}, "transient": {"display_id": "a"}},
    "execute_result": {"data": {"text/plain": "2"}, "metadata": {}, "execution_count": 3},
    "error": {"ename": "ValueError", "evalue": "no", "traceback": ["line 1"]},
    "clear_output": {"wait": True},
    "status": {"execution_state": "idle"},
    "execute_input": {"code": "x = 1", "execution_count": 1},
}


@pytest.mark.parametrize("msg_type", sorted(VALID))
def test_valid_iopub_messages_are_accepted_without_display_ids(msg_type: str) -> None:
    message = decode_message(frames(msg_type, VALID[msg_type]), SESSION, IOPUB_CONTENT)
    assert message["msg_type"] == msg_type and message["parent_header"]["msg_id"] == "cell-1"
    assert "transient" not in message["content"]  # nbclient keeps no map of display ids


def test_valid_replies_are_accepted_on_shell() -> None:
    reply = decode_message(frames("execute_reply", {"status": "ok"}), SESSION, SHELL_CONTENT)
    info = {"protocol_version": "5.3", "language_info": {}}
    assert reply["content"]["status"] == "ok"
    assert decode_message(frames("kernel_info_reply", info), SESSION, SHELL_CONTENT)


GOOD_HEADER = {"msg_id": "m", "msg_type": "stream"}
STREAM = {"name": "stdout", "text": "x"}
REFUSED = {
    "comm_open": (frames("comm_open", {"comm_id": "c", "target_name": "w", "data": {}}), "comm"),
    "comm_msg": (frames("comm_msg", {"comm_id": "c", "data": {"state": {}}}), "comm_msg"),
    "unknown_type": (frames("grader_pwned", {}), "`grader_pwned`"),
    "input_request_on_iopub": (frames("input_request", {"prompt": ""}), "input_request"),
    "reply_on_iopub": (frames("execute_reply", {"status": "ok"}), "execute_reply"),
    "missing_text": (frames("stream", {"name": "stdout"}), "valid `text`"),
    "text_not_a_string": (frames("stream", {"name": "stdout", "text": 5}), "valid `text`"),
    "content_a_list": (signed(GOOD_HEADER, PARENT, {}, [1, 2]), "not JSON objects"),
    "header_a_string": (signed("stream", PARENT, {}, STREAM), "not JSON objects"),
    "no_msg_type": (signed({"msg_id": "m"}, PARENT, {}, STREAM), "without a type"),
    "msg_type_not_a_string": (signed({**GOOD_HEADER, "msg_type": 7}, PARENT, {}, {}), "a type"),
    "parent_id_a_list": (signed(GOOD_HEADER, {"msg_id": [1]}, {}, STREAM), "malformed parent"),
    "parent_a_list": (signed(GOOD_HEADER, [], {}, STREAM), "not JSON objects"),
    "bad_count": (
        frames("execute_result", {**VALID["execute_result"], "execution_count": "1"}),
        "valid `execution_count`",
    ),
    "traceback_of_numbers": (frames("error", {**VALID["error"], "traceback": [1]}), "traceback"),
    "data_a_string": (frames("display_data", {"data": "x", "metadata": {}}), "valid `data`"),
    "wrong_signature": (
        [DELIMITER, b"0" * 64, *signed(GOOD_HEADER, PARENT, {}, STREAM)[2:]],
        "sig",
    ),
    "no_delimiter": ([b"x"] * 6, "delimiter"),
    "too_few_parts": ([DELIMITER, b"sig", b"{}"], "2 parts after the delimiter"),
    "buffers": ([*frames("stream", STREAM), b"a buffer"], "6 parts"),
    "too_many_parts": ([b"id"] * 20 + frames("stream", STREAM), "more than 8 parts"),
    "not_json": ([DELIMITER, SESSION.sign([b"{", *[b"{}"] * 3]), b"{", *[b"{}"] * 3], "not JSON"),
    "not_utf8": ([DELIMITER, SESSION.sign([b"\xff"] * 4), *[b"\xff"] * 4], "not JSON"),
    "deep_json": (signed(GOOD_HEADER, PARENT, {}, {"text": [[[[]]]]}), "valid `name`"),
    "very_deep_json": ([DELIMITER, SESSION.sign([b"[" * 10**5] * 4), *[b"[" * 10**5] * 4], "JSON"),
    "huge_number": ([DELIMITER, SESSION.sign([b"9" * 5000] * 4), *[b"9" * 5000] * 4], "not JSON"),
    "reply_status_forged": (frames("execute_reply", {"status": "great"}), "valid `status`"),
    "protocol_version_garbage": (
        frames("kernel_info_reply", {"protocol_version": "x.y"}),
        "valid `protocol_version`",
    ),
}


SHELL_CASES = {"reply_status_forged", "protocol_version_garbage"}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malformed_or_foreign_messages_are_refused_with_a_reason(case: str) -> None:
    message, fragment = REFUSED[case]
    accepted = SHELL_CONTENT if case in SHELL_CASES else IOPUB_CONTENT
    with pytest.raises(MessageError, match=fragment.replace("`", ".")):
        decode_message(message, SESSION, accepted)


def test_every_refusal_reads_as_a_sentence_for_the_student() -> None:
    with pytest.raises(MessageError) as refused:
        decode_message(frames("comm\x1b[31m" + "x" * 100, {}), SESSION, IOPUB_CONTENT)
    assert "\x1b" not in str(refused.value) and len(str(refused.value)) < 300


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = st.sampled_from(["name", "text", "data", "metadata", "transient", "execution_count", "wait"])
CONTENT = st.dictionaries(KEYS | st.text(max_size=6), JSON, max_size=6) | JSON
TYPES = st.sampled_from(sorted({*IOPUB_CONTENT, *SHELL_CONTENT, "comm_open", "x"}))
HEADER = st.fixed_dictionaries({"msg_id": st.text(max_size=4) | JSON, "msg_type": TYPES}) | JSON
PARENT_HEADER = st.just(PARENT) | st.fixed_dictionaries({"msg_id": JSON}) | JSON


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.just(DELIMITER), max_size=10))
def test_arbitrary_frames_raise_nothing_but_message_error(raw: list[bytes]) -> None:
    try:
        decode_message(raw, SESSION, IOPUB_CONTENT)
    except MessageError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEADER, PARENT_HEADER, JSON, CONTENT)
def test_what_is_accepted_never_makes_nbclient_raise(
    header: Any, parent: Any, metadata: Any, content: Any
) -> None:
    """Signed messages of any shape: refused, or handled by nbclient as a cell's output."""
    try:
        message = decode_message(signed(header, parent, metadata, content), SESSION, IOPUB_CONTENT)
    except MessageError:
        return
    cell = new_code_cell("x = 1", outputs=[])
    client = _BoundedClient(new_notebook(cells=[cell]))
    client.clear_before_next_output = False  # as nbclient sets it for each cell
    try:
        client.process_message(message, cell, 0)
    except CellExecutionComplete:
        pass
    assert not client._display_id_map and not client.widget_state


def test_the_clients_sockets_refuse_huge_frames_and_queue_little(tmp_path) -> None:
    client = _ReadyClient(transport="ipc", ip=str(tmp_path / "kernel"), session=SESSION)
    client.start_channels()
    try:
        for channel in (client.shell_channel, client.iopub_channel):
            assert channel.socket.getsockopt(zmq.MAXMSGSIZE) == MAX_FRAME_BYTES
            assert channel.socket.getsockopt(zmq.RCVHWM) == QUEUED_MESSAGES
        assert client._stdin_channel is None and client._control_channel is None
    finally:
        client.stop_channels()
