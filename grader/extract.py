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
import hashlib
import json
import marshal
import math
import zlib
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Literal, get_args

MIME_TYPE = "application/vnd.grader.payload.v1"
MAX_PAYLOAD_CHARS = 64 * 1024 * 1024
MAX_DEPTH = 16
MAX_ARRAY_BYTES = 16 * 1024 * 1024
# The routes by which a "by hand" function could hand its work to the library, as the probe
# reports them and the checks name them (`grader.expect.by_hand_cases`). The probe watches where
# every route passes (the autograd engine, each autograd node, the dispatcher), so a route is
# seen whatever name, alias or saved reference reached it; "tampering" is always forbidden.
ROUTES = {
    "autograd": "autograd (a backward pass: .backward(), torch.autograd.grad, torch.func.grad, "
    "vjp or jacrev, torch.autograd.functional, a grad_fn, or an aten::*_backward formula)",
    "forward_ad": "forward-mode autograd (dual tensors: torch.autograd.forward_ad, torch.func.jvp "
    "or jacfwd)",
    "mse_loss": "torch's own MSE (F.mse_loss, nn.MSELoss, torch._C._nn.mse_loss or aten::mse_loss)",
    "tampering": "the grader's watch on these routes was switched off or replaced",
}
AUTOGRAD = ("autograd", "forward_ad")
LIBRARY_MSE = ("mse_loss",)
TAMPERING = "tampering"
MAX_EVIDENCE_CHARS = 120
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
    the notebook's state (like `gradient(x, y)` reading `w` and `b`). The `forbidden` routes
    (keys of `ROUTES`) a case takes are counted, by whatever name or reference it reaches them: a
    gradient "derived by hand" must not run autograd, a hand-written loss not the library's.

    With `input_gradients`, the gradient of the output's sum with respect to each argument that
    requires grad is computed in the kernel after the call (outside the count): a loss is shown
    to be differentiable by the gradient that flows back through it, not by a flag it carries.
    """

    function: str
    cases: list[tuple[Any, ...]]
    globals_per_case: list[dict[str, Any]] = field(default_factory=list)
    forbidden: tuple[str, ...] = AUTOGRAD
    input_gradients: bool = False


@dataclass(frozen=True)
class CaseResult:
    """One call of a student function: its arguments and its result or error."""

    args: tuple[Any, ...]
    globals: dict[str, Any]
    output: Any = None
    error: str | None = None
    forbidden_calls: int = 0
    # route (a key of ROUTES) -> what the probe saw of it, e.g. "PowBackward0"
    forbidden_routes: dict[str, str] = field(default_factory=dict)
    input_gradients: tuple[Any, ...] = ()
    """Per argument: the gradient that flowed back to it, or None (see `Call.input_gradients`)."""


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
    request = {
        "function": call.function,
        "cases": cases,
        "forbidden": list(call.forbidden),
        "input_gradients": call.input_gradients,
    }
    return json.dumps({"call": request})


PROBE_NAME = "grader_probe"  # the probe's module in the kernel, and its code's file name
PRELOADED_PROBE = "__grader_probe_code__"
"""The builtin under which a kernel forked from a zygote finds `probe_code`, compiled before
the fork (no module of the grader can be imported in a kernel)."""


@functools.cache
def _own_source() -> str:
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


@functools.cache
def probe_code() -> CodeType:
    """This module's code as the probe cells compile it: a zygote compiles it once for all."""
    return compile(_own_source(), PROBE_NAME, "exec", dont_inherit=True)


@functools.cache
def _probe_digest() -> str:
    """What identifies `probe_code` in a kernel: the SHA-256 of its marshal form. Version 2
    writes no back-references, which depend on reference counts: its bytes are the code's."""
    return hashlib.sha256(marshal.dumps(probe_code(), 2)).hexdigest()


@functools.cache
def _packed_source() -> str:
    """This module's source as a probe cell carries it: a quarter of the text for IPython to
    parse in each cell."""
    return base64.b64encode(zlib.compress(_own_source().encode(), 9)).decode("ascii")


# The probe cell runs in the notebook's namespace, so it takes nothing from it by name: `type`
# and the module type come from literals, and every function it calls from the builtins or a
# module only once checked to be the interpreter's own: a C function of that name whose
# `__self__` is a module (what a notebook can make is a Python function, or a C method of an
# object). The code it runs is the zygote's, compiled before any student code, only if its
# digest is that of the source the cell carries (code objects cannot be changed): one the
# notebook put in its place only makes the cell compile that source itself, as it does where
# kernels are not forked from a zygote. Either way each probe runs in a fresh module.
PROBE_CELL = """\
def __grader_probe__(packed, digest, request):
    kind = (0).__class__.__class__
    builtin, get = kind([].append), {{}}.__class__.get
    builtins = (lambda: 0).__builtins__
    run, build, load = [get(builtins, name) for name in ('exec', 'compile', '__import__')]
    module = kind(get(builtins, '__build_class__').__self__)

    def own(tool, name):
        return kind(tool) is builtin and tool.__name__ == name and kind(tool.__self__) is module

    if not (own(run, 'exec') and own(build, 'compile') and own(load, '__import__')):
        raise RuntimeError('the notebook replaced exec, compile or __import__')
    code = get(builtins, {preloaded!r})
    if kind(code) is kind(own.__code__):
        hasher, dump = load('_hashlib').openssl_sha256, load('marshal').dumps
        if not (own(hasher, 'openssl_sha256') and own(dump, 'dumps')):
            raise RuntimeError('the notebook replaced marshal or hashlib')
        if hasher(dump(code, 2)).hexdigest() != digest:
            code = None
    else:
        code = None
    if code is None:
        unpack, decode = load('zlib').decompress, load('binascii').a2b_base64
        if not (own(unpack, 'decompress') and own(decode, 'a2b_base64')):
            raise RuntimeError('the notebook replaced zlib or binascii')
        code = build(unpack(decode(packed)).decode(), {name!r}, 'exec', 0, True)
    sys = load('sys')
    probe = sys.modules[{name!r}] = module({name!r})
    try:
        run(code, probe.__dict__)
        probe.answer_request(request, (lambda: 0).__globals__)
    finally:
        del sys.modules[{name!r}]
__grader_probe__({packed!r}, {digest!r}, {request!r})
del __grader_probe__"""


def probe_sources(requests: list[str]) -> list[str]:
    """Code cells that answer each request inside the kernel, one cell per request."""
    fields = {"packed": _packed_source(), "digest": _probe_digest()}
    fields |= {"name": PROBE_NAME, "preloaded": PRELOADED_PROBE}
    return [PROBE_CELL.format(**fields, request=request) for request in requests]


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
    gradients = bool(call.get("input_gradients"))
    cases = [_call_one(function, case, namespace, forbidden, gradients) for case in call["cases"]]
    return {"__dict__": {"cases": cases}}


def _call_one(
    function: Any,
    case: dict[str, Any],
    namespace: dict[str, Any],
    forbidden: list[str],
    gradients: bool = False,
) -> Any:
    args = [_kernel_argument(arg) for arg in decode(case["args"])]
    overrides = decode(case["globals"])
    saved = {name: namespace[name] for name in overrides if name in namespace}
    namespace.update(overrides)
    counter = _RouteCounter(forbidden)
    try:
        with counter:
            output = function(*args)
        result: dict[str, Any] = {"output": encode(output)}
        if gradients:
            result["input_gradients"] = encode(_input_gradients(output, args))
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    finally:
        for name in overrides:
            namespace.pop(name, None)
        namespace.update(saved)
    result["forbidden_calls"] = counter.calls
    result["forbidden_routes"] = {"__dict__": counter.routes}
    return {"__dict__": result}


def _input_gradients(output: Any, args: list[Any]) -> list[Any]:
    """d(sum of `output`)/d(arg) for each tensor argument that requires grad; None where none
    flows back (an output cut from the graph, a number wrapped in a fresh tensor)."""
    import torch

    leaves = [arg for arg in args if isinstance(arg, torch.Tensor) and arg.requires_grad]
    found: list[Any] = [None] * len(leaves)
    if isinstance(output, torch.Tensor) and output.requires_grad and leaves:
        try:
            found = list(torch.autograd.grad(output.sum(), leaves, allow_unused=True))
        except RuntimeError:  # no graph reaches the arguments
            pass
    grads = iter(found)
    return [next(grads) if any(arg is leaf for leaf in leaves) else None for arg in args]


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


# What the counter relies on is reached through syntax and checked to be C code of torch's own,
# never through a name the notebook could have rebound: `type` from a literal, and each torch
# function only if it is a C function of the expected name (a replacement written in Python,
# or another C function, is not).
_KIND: Any = (0).__class__.__class__
_OBJECT: Any = _KIND.__mro__[-1]
_TEXT: Any = "".__class__
_C_FUNCTION: Any = _KIND([].append)
_HEAP_TYPE = 1 << 9
_BACKWARD_FUNCTION_SCOPE = 1  # at::RecordScope::BACKWARD_FUNCTION: an autograd node ran
_DUAL_OPERATORS = ("_make_dual", "_unpack_dual", "_fw_primal")


class _Tampered(Exception):
    """Something the counter relies on is not torch's own, or was switched off."""


def _c_function(owner: Any, name: str) -> Any:
    function: Any = getattr(owner, name, None)
    if _KIND(function) is not _C_FUNCTION or function.__name__ != name:
        raise _Tampered(f"{name} is not torch's own")
    return function


def _c_method(cls: Any, name: str) -> Any:
    try:
        function = _KIND.__getattribute__(cls, "__dict__")[name]
        function = function if _KIND(cls) is _KIND else function.__func__
    except (AttributeError, KeyError, TypeError):
        raise _Tampered(f"{name} is not torch's own") from None
    if _KIND(function) not in (_C_FUNCTION, _METHOD) or function.__name__ != name:
        raise _Tampered(f"{name} is not torch's own")
    return function


_METHOD: Any = _KIND(_KIND.__dict__["mro"])


class _Torch:
    """torch's C functions that the counter uses, bound once per probe and checked.

    A plain class, not a dataclass: a decorator is a module attribute the notebook could replace.
    """

    def __init__(self) -> None:
        import torch

        autograd, functions, core = torch._C._autograd, torch._C._VariableFunctions, torch._C
        self.enable = _c_function(autograd, "_enable_profiler_legacy")
        self.disable = _c_function(autograd, "_disable_profiler_legacy")
        self.mark = _c_function(autograd, "_record_function_with_args_enter")
        self.unmark = _c_function(autograd, "_record_function_with_args_exit")
        events = autograd.ProfilerEvent
        self.event_name = _c_method(events, "name")
        self.event_kind = _c_method(events, "kind")
        self.event_scope = _c_method(events, "scope")
        self.push = _c_function(core, "_push_on_torch_dispatch_stack")
        self.pop = _c_function(core, "_pop_torch_dispatch_stack")
        self.task_id = _c_function(core, "_current_graph_task_id")
        self.grad_enabled = _c_function(core, "is_grad_enabled")
        self.set_grad_enabled = _c_function(core, "_set_grad_enabled")
        self.zeros = _c_function(functions, "zeros")
        self.ones = _c_function(functions, "ones")
        self.multiply = _c_function(functions, "mul")
        engine = core._ImperativeEngine
        if _KIND(engine) is not _KIND or engine.__flags__ & _HEAP_TYPE:
            raise _Tampered("torch's autograd engine is not torch's own")
        self.run_backward, self.engine = _c_method(engine, "run_backward"), engine()
        profiler = core._profiler
        options = (False, False, False, False, False, profiler._ExperimentalConfig())
        self.config = profiler.ProfilerConfig(profiler.ProfilerState.CPU, *options)


_BOUND: dict[str, Any] = {}


def _torch_or_tampering() -> Any:
    """torch's functions (a `_Torch`), bound at the probe's first call, or why they are not
    torch's own (a string)."""
    if "torch" not in _BOUND:
        try:
            _BOUND["torch"] = _Torch()
        except Exception as error:  # a replaced module may fail in any way
            _BOUND["torch"] = f"{_KIND(error).__name__}: {error}"
    return _BOUND["torch"]


def _route_of_operator(name: str) -> str | None:
    """The route an operator (`aten::mse_loss`, `tanh_backward.default`) belongs to, if any."""
    operator = name.rpartition("::")[2].partition(".")[0]
    if operator.startswith("mse_loss"):
        return "mse_loss"
    if "_backward" in operator:
        return "autograd"
    if operator.startswith(_DUAL_OPERATORS):
        return "forward_ad"
    return None


class _Watch:
    """A dispatch mode: notes forbidden operators and the autograd engine's task it runs under.

    A second observer beside the profiler: either one switched off still leaves the other.
    """

    __slots__ = ("routes", "task", "task_id")

    def __init__(self, task_id: Any) -> None:
        self.routes: dict[str, str] = {}
        self.task = -1
        self.task_id = task_id

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = f"{func.__name__}"
        task = self.task_id()
        if task != -1:
            self.task = task
            self.routes.setdefault("autograd", f"{name}, run by the autograd engine")
        route = _route_of_operator(name)
        if route is not None:
            self.routes.setdefault(route, f"aten::{name}")
        return func(*args, **(kwargs or {}))


class _RouteCounter:
    """Counts, while entered, the forbidden routes the code run in its block takes.

    Three observers, each where every route passes whatever Python name reached it:
    - the autograd engine's task ids, read before and after through a backward pass of the
      counter's own: any backward pass in between, in any thread, used up an id;
    - torch's profiler, which sees every operator the dispatcher runs and every autograd node
      called (by the engine or directly, as `y.grad_fn(...)`), in this thread;
    - a dispatch mode, which sees the operators of this thread again.
    A profiler that was stopped or replaced, a missing marker, a dispatch mode popped, or a
    function that is not torch's own count as "tampering".
    """

    def __init__(self, forbidden: list[str]) -> None:
        self.forbidden = forbidden
        self.routes: dict[str, str] = {}
        self.calls = 0
        self.torch: Any = _torch_or_tampering()
        self.marker = f"grader-counter {_OBJECT.__repr__(self)}"
        self.first_task = -1

    def __enter__(self) -> None:
        if _KIND(self.torch) is _TEXT:
            self._note("tampering", f"{self.torch}")
            return
        self.watch = _Watch(self.torch.task_id)
        self.first_task = self._engine_task()
        try:
            self.torch.enable(self.torch.config)
        except Exception as error:  # a profiler the notebook left running
            self._note("tampering", f"the profiler could not start: {error}")
        self._mark("start")
        self.torch.push(self.watch)

    def __exit__(self, *exc: object) -> None:
        if _KIND(self.torch) is _TEXT:
            return
        self._pop_watch()
        self._mark("end")
        try:
            events = self.torch.disable()
        except Exception:  # the block stopped the profiler
            self._note("tampering", "the profiler was stopped")
            events = []
        self._read_events(events)
        for route, evidence in self.watch.routes.items():
            self._note(route, evidence)
        self._read_engine_tasks()

    def _note(self, route: str, evidence: str) -> None:
        if route in self.forbidden or route == TAMPERING:
            self.calls += 1
            self.routes.setdefault(route, evidence[:MAX_EVIDENCE_CHARS])

    def _mark(self, where: str) -> None:
        self.torch.unmark(self.torch.mark(f"{self.marker}-{where}"))

    def _pop_watch(self) -> None:
        try:
            popped = self.torch.pop(None)
        except Exception:
            popped = None
        if popped is not self.watch:
            self._note("tampering", "the grader's dispatch mode was popped")
            if popped is not None:
                self.torch.push(popped)

    def _read_events(self, events: Any) -> None:
        seen_markers = 0
        for thread in events:
            for event in thread:
                if self.torch.event_kind(event) != "push":
                    continue
                name = self.torch.event_name(event)
                if name.startswith(self.marker):
                    seen_markers += 1
                elif self.torch.event_scope(event) == _BACKWARD_FUNCTION_SCOPE:
                    self._note("autograd", f"{name}, a step of a backward pass")
                elif name.startswith("autograd::engine"):
                    node = name.rpartition(": ")[2]
                    self._note("autograd", f"{node}, run by the autograd engine")
                else:
                    route = _route_of_operator(name)
                    if route is not None:
                        self._note(route, name)
        if seen_markers != 2:
            self._note("tampering", "the profiler stopped recording")

    def _engine_task(self) -> int:
        """The id of a backward pass run now; -1 if none can run (say, in inference mode)."""
        torch, watch = self.torch, _Watch(self.torch.task_id)
        run_backward, engine = torch.run_backward, torch.engine
        grad_was_enabled = torch.grad_enabled()
        try:
            torch.set_grad_enabled(True)
            leaf = torch.zeros((), requires_grad=True)
            output = torch.multiply(leaf, 1.0)
            torch.push(watch)
            try:
                run_backward(
                    engine, (output,), (torch.ones(()),), False, False, (leaf,), False, False
                )
            finally:
                torch.pop(None)
        except Exception:
            return -1
        finally:
            torch.set_grad_enabled(grad_was_enabled)
        return watch.task

    def _read_engine_tasks(self) -> None:
        last_task = self._engine_task()
        if self.first_task != -1 and last_task != -1 and last_task - self.first_task > 1:
            passes = last_task - self.first_task - 1
            self._note("autograd", f"the autograd engine ran {passes} backward pass(es)")


# ----------------------------------------------------------------------------- grader side


CellStatus = Literal["ok", "error", "timeout", "memory", "died", "skipped"]
"""How a code cell ended: it ran (`ok`), raised (`error`), ran past its time, its memory or its
kernel (`timeout`, `memory`, `died`), or was not run (`skipped`: the notebook's time was up)."""
CELL_STATUSES: tuple[CellStatus, ...] = get_args(CellStatus)


@dataclass(frozen=True)
class CellOutcome:
    """How one code cell of a run ended: in the live run, in a runner's result and in the
    reference cache alike."""

    grade_id: str
    status: CellStatus
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
    cells: dict[str, CellOutcome]
    """By grade id."""


def collect_run(
    parameters: dict[str, Any],
    cells: dict[str, CellOutcome],
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
        gid: CellOutcome(gid, cell.status, clean_message(cell.ename), clean_message(cell.evalue))
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
        gradients = case.get("input_gradients")
        results.append(
            CaseResult(
                args=tuple(args),
                globals=globals_,
                output=case.get("output"),
                error=clean_message(error) if isinstance(error, str) else None,
                forbidden_calls=calls if isinstance(calls, int) else 0,
                forbidden_routes=_routes(case.get("forbidden_routes")),
                input_gradients=tuple(gradients) if isinstance(gradients, list) else (),
            )
        )
    return results


def _routes(value: Any) -> dict[str, str]:
    """The routes a case took, as the probe named them; unknown routes are not kept."""
    if not isinstance(value, dict):
        return {}
    return {
        route: evidence[:MAX_EVIDENCE_CHARS]
        for route, evidence in value.items()
        if route in ROUTES and isinstance(evidence, str)
    }
