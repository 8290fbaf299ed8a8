"""The boundary between a kernel and the grader: every message a kernel sends is read here.

A kernel knows its connection key, so a valid signature proves nothing about a message: the
student's code can forge any message on the kernel's own channels, send raw frames, or rebind
its sockets. `decode_message` is therefore a validator, in the manner of `extract.decode`: an
allow-list of message types per channel, each with the content keys the grader's client reads
and their types, bounded in parts and bytes. What it accepts can be handed to nbclient, which
then neither raises nor keeps anything the cell's output limit does not count (no display ids,
no comm or widget state). What it refuses raises `MessageError`, and the cell that was running
is stopped (see `grader.execute`).

The sockets themselves are bounded too (`SOCKET_OPTIONS`): libzmq refuses a frame larger than
`MAX_FRAME_BYTES` before anything allocates it, and holds at most `QUEUED_MESSAGES` messages
that the grader has not read yet; the kernel then waits (or drops, for iopub) on its side.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

from grader.extract import MAX_PAYLOAD_CHARS

# The probe's payload is the largest message a run needs; JSON escapes can double it.
MAX_FRAME_BYTES = 2 * MAX_PAYLOAD_CHARS + 1024 * 1024
MAX_PARTS = 8  # routing ids, the delimiter, the signature and four JSON parts; no buffers
QUEUED_MESSAGES = 2
MAX_MESSAGES_PER_CELL = 100_000
"""Messages of any kind a cell may cause: ipykernel batches printed text, so honest cells send
few; a flood past this is stopped, since even dropped messages cost the grader's CPU."""
SOCKET_OPTIONS = {zmq.MAXMSGSIZE: MAX_FRAME_BYTES, zmq.RCVHWM: QUEUED_MESSAGES}
DELIMITER = b"<IDS|MSG>"

Check = Callable[[Any], bool]


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _mapping(value: Any) -> bool:
    return isinstance(value, dict)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _version(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d{1,4}(\.\d{1,4}){0,3}", value) is not None


def _reply_status(value: Any) -> bool:
    return value in ("ok", "error", "aborted")


_BUNDLE: dict[str, Check] = {"data": _mapping, "metadata": _mapping}
IOPUB_CONTENT: dict[str, dict[str, Check]] = {
    "iopub_welcome": {},
    "status": {"execution_state": _text},
    "execute_input": {"code": _text},
    "stream": {"name": _text, "text": _text},
    "display_data": _BUNDLE,
    "update_display_data": _BUNDLE,
    "execute_result": {**_BUNDLE, "execution_count": _count},
    "error": {"ename": _text, "evalue": _text, "traceback": _texts},
    "clear_output": {"wait": _flag},
}
"""What a kernel may publish, with the keys nbclient reads of each; comms (widgets), input
requests, debugger events and anything unknown are refused: no frontend runs them here."""
SHELL_CONTENT: dict[str, dict[str, Check]] = {
    "execute_reply": {"status": _reply_status},
    "kernel_info_reply": {"protocol_version": _version},
}
"""The replies to the two requests the grader sends on shell."""
OPTIONAL_CONTENT: dict[str, Check] = {
    "execution_count": _count,
    "ename": _text,
    "evalue": _text,
    "traceback": _texts,
}
"""Keys that any accepted content may carry and nbclient reads when they are there."""
DROPPED_CONTENT = ("transient",)
"""Dropped from every content: display ids would let updates bypass the output limit and grow
nbclient's map of them without bound, and the grader reads no display after its cell."""


class MessageError(ValueError):
    """A kernel message the grader refuses; the text says why, for the student."""


def decode_message(
    frames: list[bytes], session: Session, accepted: Mapping[str, Mapping[str, Check]]
) -> dict[str, Any]:
    """The message that `frames` hold, if its type is in `accepted` and its shape is right.

    The result is shaped as `Session.deserialize` returns it (no buffers), with the content's
    size in bytes under `content_bytes`; anything else raises `MessageError`.
    """
    if len(frames) > MAX_PARTS:
        raise MessageError(f"a message in more than {MAX_PARTS} parts")
    if DELIMITER not in frames:
        raise MessageError("a message without the Jupyter delimiter")
    parts = frames[frames.index(DELIMITER) + 1 :]
    if len(parts) != 5:
        raise MessageError(f"a message in {len(parts)} parts after the delimiter, not 5")
    if session.auth is not None:
        expected = session.sign(parts[1:5])
        if not hmac.compare_digest(parts[0], expected):
            raise MessageError("a message with a wrong signature")
    header, parent, metadata, content = (_json_object(part) for part in parts[1:5])
    msg_type = _message_type(header, parent, accepted)
    _check_content(msg_type, content, accepted[msg_type])
    for key in DROPPED_CONTENT:
        content.pop(key, None)
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": msg_type,
        "parent_header": parent,
        "metadata": metadata,
        "content": content,
        "buffers": [],
        "content_bytes": len(parts[4]),
    }


def _json_object(part: bytes) -> dict[str, Any]:
    try:
        value = json.loads(part)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested or numbered too far
        raise MessageError("a message whose parts are not JSON") from None
    if not isinstance(value, dict):
        raise MessageError("a message whose parts are not JSON objects")
    return value


def _message_type(
    header: dict[str, Any], parent: dict[str, Any], accepted: Mapping[str, Mapping[str, Check]]
) -> str:
    msg_type, msg_id = header.get("msg_type"), header.get("msg_id")
    if not isinstance(msg_type, str) or not isinstance(msg_id, str):
        raise MessageError("a message without a type or an id")
    if not isinstance(parent.get("msg_id", ""), str):
        raise MessageError(f"a message of type `{_shown(msg_type)}` with a malformed parent")
    if msg_type not in accepted:
        raise MessageError(
            f"a message of type `{_shown(msg_type)}`, which the grader does not accept: a graded "
            "cell may print and display, but not open comms or widgets nor ask for input"
        )
    return msg_type


def _check_content(msg_type: str, content: dict[str, Any], required: Mapping[str, Check]) -> None:
    for key, check in required.items():
        if key not in content or not check(content[key]):
            raise MessageError(f"a message of type `{msg_type}` without a valid `{key}`")
    for key, check in OPTIONAL_CONTENT.items():
        if key in content and key not in required and not check(content[key]):
            raise MessageError(f"a message of type `{msg_type}` with a malformed `{key}`")


def _shown(msg_type: str) -> str:
    """A message type as a student may read it: short and printable."""
    shown = "".join(char if char.isprintable() and char != "`" else "?" for char in msg_type)
    return shown[:40] + ("..." if len(shown) > 40 else "")


class MessageGuard:
    """What a client's channels refused while a cell ran (the first reason), and how many
    messages the cell caused."""

    def __init__(self) -> None:
        self.refusal = ""
        self.received = 0

    def start_cell(self) -> None:
        self.refusal, self.received = "", 0

    def admit(self) -> None:
        """Count one message, refusing the cell's messages past `MAX_MESSAGES_PER_CELL`."""
        self.received += 1
        if self.received > MAX_MESSAGES_PER_CELL:
            self.refuse(f"more than {MAX_MESSAGES_PER_CELL} messages in one cell")

    def refuse(self, reason: str) -> None:
        self.refusal = self.refusal or reason


class GuardedChannel(AsyncZMQSocketChannel):
    """A client channel that hands on only what `decode_message` accepts.

    A refused message is reported to the guard and skipped: nbclient waits on as if it had
    not come, until the client reports the kernel dead (see `grader.pool`).
    """

    accepted: Mapping[str, Mapping[str, Check]] = IOPUB_CONTENT

    def __init__(self, socket: zmq.asyncio.Socket, session: Session, loop: Any = None) -> None:
        super().__init__(socket, session, loop)
        self.guard = MessageGuard()

    async def get_msg(  # type: ignore[override]  # async, as jupyter_client's own
        self, timeout: float | None = None
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not await self.socket.poll(wait):
                raise Empty
            frames: list[bytes] = await self.socket.recv_multipart()
            self.guard.admit()
            try:
                return decode_message(frames, self.session, self.accepted)
            except MessageError as error:
                self.guard.refuse(f"the kernel sent {error}")


class GuardedShellChannel(GuardedChannel):
    accepted = SHELL_CONTENT
