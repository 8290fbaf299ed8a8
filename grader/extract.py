"""The one boundary between the student's kernel and the grader.

Values cross it as JSON text, in both directions: tensors and arrays as dtype, shape and base64
bytes, modules as their `state_dict`. Nothing is ever unpickled or evaluated on the grader's side;
the decoder accepts only the shapes of data listed below and rejects everything else.

This module has a second life: its source text is executed inside the kernel (see
`probe_sources`), where `run_request` reads the student's variables and calls the student's
functions on the grader's inputs. It therefore imports only the standard library at the top and
numpy/torch inside functions, and never imports the rest of the grader.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

MIME_TYPE = "application/vnd.grader.payload.v1"
MAX_PAYLOAD_CHARS = 64 * 1024 * 1024
MAX_DEPTH = 16
MAX_ARRAY_BYTES = 16 * 1024 * 1024
# `.backward()`, `torch.autograd.grad` and `torch.func` all reach the engine through
# `torch.autograd._engine_run_backward`, looked up when they run: a notebook's own name for
# `grad` or `backward` (`from torch.autograd import grad`) is counted there.
AUTOGRAD = (
    "torch.autograd.backward",
    "torch.autograd.grad",
    "torch.autograd._engine_run_backward",
)
# dtype name -> (numpy name, bytes per item)
DTYPES = {
    "float16": ("float16", 2),
    "bfloat16": ("float32", 4),  # numpy has no bfloat16: sent widened to float32
    "float32": ("float32", 4),
    "float64": ("float64", 8),
    "int8": ("int8", 1),
    "uint8": ("uint8", 1),
    "int16": ("int16", 2),
    "int32": ("int32", 4),
    "int64": ("int64", 8),
    "bool": ("bool", 1),
}


class PayloadError(ValueError):
    """Data from the kernel that is not in the expected format."""


@dataclass(frozen=True)
class ModuleState:
    """What crosses the boundary for an `nn.Module`: its class name and `state_dict`."""

    type_name: str
    state: dict[str, Any]


@dataclass(frozen=True)
class Unsupported:
    """A value of a type that cannot cross the boundary (a function, a file, ...)."""

    type_name: str


@dataclass(frozen=True)
class Linear:
    """An argument for a student function: built as `nn.Linear` in the kernel."""

    weight: Any
    bias: Any


@dataclass(frozen=True)
class Call:
    """The grader's calls of one student function, case by case.

    Each case is a tuple of positional arguments; `globals_per_case`, when given, are
    notebook-level variables set before each call (and restored after), for functions that read
    the notebook's state (like `gradient(x, y)` reading `w` and `b`). Calls of the `forbidden`
    functions (dotted names) during a case are counted, under those names and under any name the
    notebook bound to them (`from torch.nn.functional import mse_loss`): a gradient "derived by
    hand" must not call autograd, a hand-written loss must not call the library's.
    """

    function: str
    cases: list[tuple[Any, ...]]
    globals_per_case: list[dict[str, Any]] = field(default_factory=list)
    forbidden: tuple[str, ...] = AUTOGRAD


@dataclass(frozen=True)
class CaseResult:
    """One call of a student function: its arguments and its result or error."""

    args: tuple[Any, ...]
    globals: dict[str, Any]
    output: Any = None
    error: str | None = None
    forbidden_calls: int = 0


# ----------------------------------------------------------------------------- encoding


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-ready form of `value` (runs in the kernel, and in the grader for inputs)."""
    if depth > MAX_DEPTH:
        return {"__unsupported__": "nested too deeply"}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [encode(item, depth + 1) for item in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {"__dict__": {key: encode(item, depth + 1) for key, item in value.items()}}
        return {"__unsupported__": "dict with non-string keys"}
    if isinstance(value, Linear):
        return {"__linear__": [encode(value.weight), encode(value.bias)]}
    return _encode_array_like(value)


def _encode_array_like(value: Any) -> Any:
    import numpy as np

    torch = _torch_if_loaded()
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype == "bfloat16":
            tensor = tensor.float()
        if dtype not in DTYPES:
            return {"__unsupported__": f"tensor of {dtype}"}
        fields = _array_fields(tensor.contiguous().numpy(), dtype)
        if "too_large" in fields:
            return {"__unsupported__": f"tensor of {fields['too_large']} bytes (too large)"}
        return {"__tensor__": {**fields, "requires_grad": bool(value.requires_grad)}}
    if torch is not None and isinstance(value, torch.nn.Module):
        state = {key: encode(item) for key, item in value.state_dict().items()}
        return {"__module__": {"type": type(value).__name__, "state": state}}
    if isinstance(value, np.ndarray):
        dtype = str(value.dtype)
        if dtype not in DTYPES or dtype == "bfloat16":
            return {"__unsupported__": f"array of {dtype}"}
        fields = _array_fields(np.ascontiguousarray(value), dtype)
        if "too_large" in fields:
            return {"__unsupported__": f"array of {fields['too_large']} bytes (too large)"}
        return {"__ndarray__": fields}
    if isinstance(value, np.generic):
        return encode(value.item())
    return {"__unsupported__": type(value).__name__}


def _array_fields(array: Any, dtype: str) -> dict[str, Any]:
    if array.nbytes > MAX_ARRAY_BYTES:
        return {"dtype": dtype, "shape": list(array.shape), "too_large": array.nbytes}
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    data = base64.b64encode(little.tobytes()).decode("ascii")
    return {"dtype": dtype, "shape": list(array.shape), "data": data}


def _torch_if_loaded() -> Any:
    import sys

    return sys.modules.get("torch")


# ----------------------------------------------------------------------------- decoding


def decode(value: Any, depth: int = 0) -> Any:
    """The Python value of an encoded form; raises PayloadError on anything unexpected."""
    if depth > MAX_DEPTH + 1:
        raise PayloadError("nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return [decode(item, depth + 1) for item in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise PayloadError("expected a tagged object")
    ((tag, body),) = value.items()
    if tag == "__tuple__" and isinstance(body, list):
        return tuple(decode(item, depth + 1) for item in body)
    if tag == "__dict__" and isinstance(body, dict):
        return {_text(key): decode(item, depth + 1) for key, item in body.items()}
    if tag == "__tensor__":
        return _decode_tensor(body)
    if tag == "__ndarray__":
        return _decode_array(body)
    if tag == "__module__" and isinstance(body, dict):
        state = decode({"__dict__": body.get("state")}, depth + 1)
        return ModuleState(_text(body.get("type")), state)
    if tag == "__linear__" and isinstance(body, list) and len(body) == 2:
        return Linear(decode(body[0], depth + 1), decode(body[1], depth + 1))
    if tag == "__unsupported__":
        return Unsupported(_text(body))
    raise PayloadError(f"unknown tag {tag!r}")


def _decode_array(body: Any) -> Any:
    import numpy as np

    if not isinstance(body, dict):
        raise PayloadError("array without fields")
    dtype, shape, data = body.get("dtype"), body.get("shape"), body.get("data")
    if dtype not in DTYPES or not isinstance(data, str) or not isinstance(shape, list):
        raise PayloadError("array with a bad dtype, shape or data")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise PayloadError("array with a bad shape")
    numpy_name, itemsize = DTYPES[dtype]
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) != math.prod(shape) * itemsize:
        raise PayloadError("array data does not match its shape")
    return np.frombuffer(raw, dtype=np.dtype(numpy_name).newbyteorder("<")).reshape(shape).copy()


def _decode_tensor(body: Any) -> Any:
    import torch

    array = _decode_array(body)
    tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))
    if body["dtype"] == "bfloat16":
        tensor = tensor.to(torch.bfloat16)
    if body.get("requires_grad") is True and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise PayloadError("expected a string")
    return value


def decode_payload(text: str) -> Any:
    """Decode the JSON text of one payload from the kernel."""
    if len(text) > MAX_PAYLOAD_CHARS:
        raise PayloadError(f"payload of {len(text)} characters is larger than the limit")
    try:
        return decode(json.loads(text))
    except (ValueError, RecursionError) as error:
        raise PayloadError(str(error)) from None


# ----------------------------------------------------------------------------- requests


def values_request(names: list[str]) -> str:
    """JSON request that reads the named notebook variables."""
    return json.dumps({"values": names})


def call_request(call: Call) -> str:
    """JSON request that calls one student function on the grader's inputs."""
    cases = [
        {
            "args": encode(list(args)),
            "globals": encode(call.globals_per_case[i] if call.globals_per_case else {}),
        }
        for i, args in enumerate(call.cases)
    ]
    request = {"function": call.function, "cases": cases, "forbidden": list(call.forbidden)}
    return json.dumps({"call": request})


@functools.cache
def _own_source() -> str:
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


def probe_sources(requests: list[str]) -> list[str]:
    """Code cells that answer each request inside the kernel, one cell per request."""
    module_source = _own_source()
    return [
        "def __grader_probe__(source, request):\n"
        "    import sys, types\n"
        "    module = sys.modules['grader_probe'] = types.ModuleType('grader_probe')\n"
        "    try:\n"
        "        exec(compile(source, 'grader_probe', 'exec'), module.__dict__)\n"
        "        module.answer_request(request, globals())\n"
        "    finally:\n"
        "        del sys.modules['grader_probe']\n"
        f"__grader_probe__({module_source!r}, {request!r})\n"
        "del __grader_probe__"
        for request in requests
    ]


# ----------------------------------------------------------------------------- kernel side


def answer_request(request_text: str, namespace: dict[str, Any]) -> None:
    """Inside the kernel: answer one request and publish the payload as display data."""
    from IPython.display import display

    request = json.loads(request_text)
    if "values" in request:
        answer: Any = {
            "__dict__": {name: _read_value(name, namespace) for name in request["values"]}
        }
    else:
        answer = _call_cases(request["call"], namespace)
    display({MIME_TYPE: json.dumps(answer)}, raw=True)


def _read_value(name: str, namespace: dict[str, Any]) -> Any:
    if name not in namespace:
        return {"__dict__": {"missing": True}}
    try:
        return {"__dict__": {"value": encode(namespace[name])}}
    except Exception as error:  # the student's object may fail in any way
        return {"__dict__": {"error": f"{type(error).__name__}: {error}"}}


def _call_cases(call: dict[str, Any], namespace: dict[str, Any]) -> Any:
    function = namespace.get(call["function"])
    if not callable(function):
        return {"__dict__": {"missing": True}}
    forbidden = call.get("forbidden", [])
    cases = [_call_one(function, case, namespace, forbidden) for case in call["cases"]]
    return {"__dict__": {"cases": cases}}


def _call_one(
    function: Any, case: dict[str, Any], namespace: dict[str, Any], forbidden: list[str]
) -> Any:
    args = [_kernel_argument(arg) for arg in decode(case["args"])]
    overrides = decode(case["globals"])
    saved = {name: namespace[name] for name in overrides if name in namespace}
    namespace.update(overrides)
    counter = _CallCounter(forbidden, namespace)
    try:
        with counter:
            output = function(*args)
        result: dict[str, Any] = {"output": encode(output)}
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    finally:
        for name in overrides:
            namespace.pop(name, None)
        namespace.update(saved)
    result["forbidden_calls"] = counter.calls
    return {"__dict__": result}


def _kernel_argument(value: Any) -> Any:
    if isinstance(value, Linear):
        import torch

        weight = value.weight
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(value.bias)
        return layer
    return value


class _CallCounter:
    """Counts calls of the named functions (`module.path.function`) while it is entered, made
    through their modules or through the notebook's own names for them.

    Only functions of modules already imported are watched: the student's code cannot have
    called the others.
    """

    def __init__(self, names: list[str], namespace: dict[str, Any]) -> None:
        self.names = names
        self.namespace = namespace
        self.calls = 0
        self.saved: list[tuple[Any, str, Any]] = []
        self.aliases: dict[str, Any] = {}

    def __enter__(self) -> None:
        import sys

        counted = {}
        for name in self.names:
            owner_name, _, attribute = name.rpartition(".")
            owner = sys.modules.get(owner_name)
            original = getattr(owner, attribute, None) if owner is not None else None
            if callable(original):
                counted[id(original)] = self._counted(original)
                self.saved.append((owner, attribute, original))
                setattr(owner, attribute, counted[id(original)])
        for key, value in list(self.namespace.items()):
            if id(value) in counted:
                self.aliases[key] = value
                self.namespace[key] = counted[id(value)]

    def __exit__(self, *exc: object) -> None:
        for owner, attribute, original in reversed(self.saved):
            setattr(owner, attribute, original)
        self.saved.clear()
        self.namespace.update(self.aliases)
        self.aliases.clear()

    def _counted(self, original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        return counted


# ----------------------------------------------------------------------------- grader side


@dataclass(frozen=True)
class CellStatus:
    """How a TO DO (or any) cell ended, as the checks need to know it."""

    status: str
    ename: str = ""
    evalue: str = ""


@dataclass(frozen=True)
class RunData:
    """Everything the checks see of one notebook run, as plain data."""

    parameters: dict[str, Any]
    values: dict[str, Any]
    problems: dict[str, str]
    calls: dict[str, list[CaseResult]]
    call_problems: dict[str, str]
    cells: dict[str, CellStatus]


def collect_run(
    parameters: dict[str, Any],
    cells: dict[str, CellStatus],
    payloads: list[tuple[str | None, str]],
    value_names: list[str],
    calls: list[Call],
) -> RunData:
    """Decode the probe payloads of one run (values first, then one per call).

    `payloads` holds, per probe, its payload text or None and why it is missing. This is where
    the kernel's text enters the grader: every message of the run (cell errors, read and call
    errors) is cleaned and cut here (`grader.untrusted`).
    """
    from grader.untrusted import clean_message  # here: this module also runs in the kernel

    cells = {
        gid: CellStatus(cell.status, clean_message(cell.ename), clean_message(cell.evalue))
        for gid, cell in cells.items()
    }
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    (values_text, values_failure), *call_payloads = payloads
    for name, slot in _decoded_slots(values_text, values_failure, value_names).items():
        if "value" in slot:
            values[name] = slot["value"]
        else:
            error = slot.get("error", "")
            problems[name] = clean_message(error if isinstance(error, str) else "malformed")
    results: dict[str, list[CaseResult]] = {}
    call_problems: dict[str, str] = {}
    for call, (text, failure) in zip(calls, call_payloads, strict=False):
        try:
            results[call.function] = _call_results(call, text, clean_message(failure))
        except PayloadError as error:
            call_problems[call.function] = clean_message(str(error))
    return RunData(parameters, values, problems, results, call_problems, cells)


def _decoded_slots(text: str | None, failure: str, names: list[str]) -> dict[str, dict[str, Any]]:
    if text is None:
        return {name: {"error": f"the values could not be read: {failure}"} for name in names}
    try:
        slots = decode_payload(text)
        if not isinstance(slots, dict) or set(slots) != set(names):
            raise PayloadError("the payload does not list the requested values")
        if not all(isinstance(slot, dict) for slot in slots.values()):
            raise PayloadError("a value slot is malformed")
    except PayloadError as error:
        return {name: {"error": f"the values could not be read: {error}"} for name in names}
    return slots


def _call_results(call: Call, text: str | None, failure: str) -> list[CaseResult]:
    from grader.untrusted import clean_message

    if text is None:
        raise PayloadError(failure)
    answer = decode_payload(text)
    if not isinstance(answer, dict):
        raise PayloadError("the call's answer is malformed")
    if answer.get("missing"):
        raise PayloadError("missing")
    cases = answer.get("cases")
    if not isinstance(cases, list) or len(cases) != len(call.cases):
        raise PayloadError("the call's answer has the wrong number of cases")
    results = []
    for index, (args, case) in enumerate(zip(call.cases, cases, strict=True)):
        if not isinstance(case, dict):
            raise PayloadError("a case of the call's answer is malformed")
        error, calls = case.get("error"), case.get("forbidden_calls", 0)
        globals_ = call.globals_per_case[index] if call.globals_per_case else {}
        results.append(
            CaseResult(
                args=tuple(args),
                globals=globals_,
                output=case.get("output"),
                error=clean_message(error) if isinstance(error, str) else None,
                forbidden_calls=calls if isinstance(calls, int) else 0,
            )
        )
    return results
