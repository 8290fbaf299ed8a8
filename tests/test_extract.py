from __future__ import annotations

import base64
import binascii
import builtins
import json
import marshal
import sys
import types

import numpy as np
import pytest
import torch

from grader import extract
from grader.extract import (
    AUTOGRAD,
    LIBRARY_MSE,
    MAX_PAYLOAD_CHARS,
    ModuleState,
    PayloadError,
    Unsupported,
    _call_cases,
    decode,
    decode_payload,
    encode,
)


def roundtrip(value: object) -> object:
    return decode_payload(json.dumps(encode(value)))


def test_plain_data_roundtrips() -> None:
    value = {"a": [1, 2.5, None, "x", True], "b": (1, 2)}
    assert roundtrip(value) == value


def test_tensors_and_arrays_keep_dtype_shape_and_values() -> None:
    tensor = torch.randn(3, 4, dtype=torch.float64)
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    got = roundtrip({"t": tensor, "a": array, "h": torch.ones(2, dtype=torch.bfloat16)})
    assert isinstance(got, dict)
    assert torch.equal(got["t"], tensor) and got["t"].dtype == torch.float64
    assert np.array_equal(got["a"], array) and got["a"].dtype == np.int32
    assert got["h"].dtype == torch.bfloat16


def test_module_crosses_as_its_state_dict() -> None:
    layer = torch.nn.Linear(2, 1)
    got = roundtrip(layer)
    assert isinstance(got, ModuleState) and got.type_name == "Linear"
    assert torch.equal(got.state["weight"], layer.weight.detach())


def test_objects_that_cannot_cross_are_named() -> None:
    assert roundtrip(print) == Unsupported("builtin_function_or_method")
    assert roundtrip({1: 2}) == Unsupported("dict with non-string keys")


def forged_tensor(**fields: object) -> str:
    body = {"dtype": "float32", "shape": [2], "data": base64.b64encode(b"\0" * 8).decode()}
    body.update(fields)
    return json.dumps({"__tensor__": body})


@pytest.mark.parametrize(
    "payload",
    [
        forged_tensor(dtype="object"),
        forged_tensor(shape=[3]),
        forged_tensor(shape=[-1]),
        forged_tensor(data="not base64!"),
        json.dumps({"__pickle__": "gASV"}),
        json.dumps({"__dict__": {"a": 1}, "extra": 2}),
        "{not json",
        "[" * 10000 + "]" * 10000,
    ],
)
def test_forged_payloads_are_rejected(payload: str) -> None:
    with pytest.raises(PayloadError):
        decode_payload(payload)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(PayloadError, match="larger than the limit"):
        decode_payload(" " * (MAX_PAYLOAD_CHARS + 1))


def test_decoding_never_builds_arbitrary_objects() -> None:
    assert decode({"__unsupported__": "os.system"}) == Unsupported("os.system")


# Ways a "by hand" cell could hand its work to autograd: each one defines `gradient(x)`, the
# gradient of sum(x ** 2), through a route of its own.
AUTOGRAD_ROUTES = {
    "backward": "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    (x ** 2).sum().backward()\n    return x.grad",
    "autograd_grad": "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    return torch.autograd.grad((x ** 2).sum(), x)[0]",
    "imported_grad": "from torch.autograd import grad\n\ndef gradient(x):\n"
    "    x = x.clone().requires_grad_(True)\n    return grad((x ** 2).sum(), x)[0]",
    "default_argument": "def gradient(x, grad=torch.autograd.grad):\n"
    "    x = x.clone().requires_grad_(True)\n    return grad((x ** 2).sum(), x)[0]",
    "closure": "def make(grad):\n    def gradient(x):\n        x = x.clone().requires_grad_(True)\n"
    "        return grad((x ** 2).sum(), x)[0]\n    return gradient\n\n"
    "gradient = make(torch.autograd.grad)",
    "class_attribute": "class Tools:\n    grad = staticmethod(torch.autograd.grad)\n\n"
    "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    return Tools.grad((x ** 2).sum(), x)[0]",
    "engine_itself": "engine = torch.autograd.Variable._execution_engine\n\n"
    "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    return engine.run_backward(((x ** 2).sum(),), (torch.tensor(1.0),), False, False, (x,),"
    " False, False)[0]",
    "grad_fn_called": "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    return (x ** 2).grad_fn(torch.ones_like(x))",
    "torch_func_grad": "def gradient(x):\n    return torch.func.grad(lambda x: (x ** 2).sum())(x)",
    "torch_func_vjp": "def gradient(x):\n    return torch.func.vjp(lambda x: (x ** 2).sum(), x)[1]"
    "(torch.tensor(1.0))[0]",
    "torch_func_jacrev": "def gradient(x):\n"
    "    return torch.func.jacrev(lambda x: (x ** 2).sum())(x)",
    "torch_func_jvp": "def gradient(x):\n    return torch.stack([torch.func.jvp(lambda x: (x ** 2)"
    ".sum(), (x,), (e,))[1] for e in torch.eye(len(x))])",
    "torch_func_jacfwd": "def gradient(x):\n"
    "    return torch.func.jacfwd(lambda x: (x ** 2).sum())(x)",
    "forward_ad": "import torch.autograd.forward_ad as fwAD\n\ndef gradient(x):\n"
    "    out = []\n    for e in torch.eye(len(x)):\n        with fwAD.dual_level():\n"
    "            y = (fwAD.make_dual(x, e) ** 2).sum()\n"
    "            out.append(fwAD.unpack_dual(y).tangent)\n    return torch.stack(out)",
    "functional_jacobian": "def gradient(x):\n"
    "    return torch.autograd.functional.jacobian(lambda x: (x ** 2).sum(), x)",
    "functional_vjp": "def gradient(x):\n"
    "    return torch.autograd.functional.vjp(lambda x: (x ** 2).sum(), x)[1]",
    "in_a_thread": "import threading\n\ndef gradient(x):\n    out = []\n"
    "    def work():\n        t = x.clone().requires_grad_(True)\n"
    "        out.append(torch.autograd.grad((t ** 2).sum(), t)[0])\n"
    "    thread = threading.Thread(target=work)\n    thread.start()\n    thread.join()\n"
    "    return out[0]",
    "record_functions_off": "def gradient(x):\n"
    "    torch._C._autograd._enable_record_function(False)\n"
    "    try:\n        t = x.clone().requires_grad_(True)\n"
    "        return torch.autograd.grad((t ** 2).sum(), t)[0]\n    finally:\n"
    "        torch._C._autograd._enable_record_function(True)",
    "dispatch_mode_popped": "from torch.utils._python_dispatch import _pop_mode_temporarily\n\n"
    "def gradient(x):\n    with _pop_mode_temporarily():\n"
    "        t = x.clone().requires_grad_(True)\n"
    "        return torch.autograd.grad((t ** 2).sum(), t)[0]",
}

# The same gradient by hand: none of them may be counted.
HONEST = {
    "arithmetic": "def gradient(x):\n    return 2 * x",
    "under_no_grad": "def gradient(x):\n    with torch.no_grad():\n        return x + x",
    "graph_built_but_not_run": "def gradient(x):\n    t = x.clone().requires_grad_(True)\n"
    "    return (2 * t).detach()",
    "numpy": "import numpy as np\n\ndef gradient(x):\n"
    "    return torch.from_numpy(2 * np.asarray(x))",
    "vmap": "def gradient(x):\n    return torch.vmap(lambda v: 2 * v)(x)",
    "grad_mode_left_off": "def gradient(x):\n    torch.set_grad_enabled(False)\n    return 2 * x",
}


def counted(
    source: str, forbidden: tuple[str, ...]
) -> tuple[int, dict[str, str], dict[str, object]]:
    """Calls of `forbidden` routes counted while `gradient(tensor([1, 2]))`, defined by `source`,
    runs, the routes as the probe names them, and the notebook's namespace afterwards."""
    namespace: dict[str, object] = {"torch": torch}
    exec(source, namespace)
    call = {
        "function": "gradient",
        "cases": [{"args": encode([torch.tensor([1.0, 2.0])]), "globals": encode({})}],
        "forbidden": list(forbidden),
    }
    try:
        (case,) = decode(_call_cases(call, namespace))["cases"]
    finally:
        torch.set_grad_enabled(True)
    assert "error" not in case, case
    assert case["output"].tolist() == [2.0, 4.0]
    return case["forbidden_calls"], case["forbidden_routes"], namespace


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("route", sorted(AUTOGRAD_ROUTES))
def test_every_route_to_autograd_is_counted(route: str) -> None:
    originals = {name: getattr(torch.autograd, name) for name in ("grad", "backward")}
    calls, routes, namespace = counted(AUTOGRAD_ROUTES[route], AUTOGRAD)
    assert calls >= 1 and set(routes) & {"autograd", "forward_ad"}, routes
    # The library and the notebook's own names are given back untouched.
    assert {name: getattr(torch.autograd, name) for name in originals} == originals
    assert namespace.get("grad", originals["grad"]) is originals["grad"]
    assert torch._C._len_torch_dispatch_stack() == 0
    assert not torch.autograd.profiler._is_profiler_enabled


@pytest.mark.parametrize("honest", sorted(HONEST))
def test_a_gradient_by_hand_takes_no_forbidden_route(honest: str) -> None:
    assert counted(HONEST[honest], (*AUTOGRAD, *LIBRARY_MSE))[:2] == (0, {})


MSE_ROUTES = {
    "functional": "import torch.nn.functional as F\nmse = F.mse_loss",
    "module": "mse = torch.nn.MSELoss()",
    "c_level": "mse = torch._C._nn.mse_loss",
    "aten_op": "mse = torch.ops.aten.mse_loss",
}


@pytest.mark.parametrize("route", sorted(MSE_ROUTES))
def test_every_route_to_the_library_mse_is_counted(route: str) -> None:
    source = f"{MSE_ROUTES[route]}\n\ndef gradient(x):\n    mse(x, x)\n    return 2 * x"
    calls, routes, _ = counted(source, LIBRARY_MSE)
    assert calls >= 1 and routes == {"mse_loss": "aten::mse_loss"}
    # Only the routes a call forbids are counted.
    assert counted(source, AUTOGRAD)[:2] == (0, {})


# Replacing what the counter itself uses is seen as tampering.
TAMPERED = {
    "profiler_function": ("_autograd", "_disable_profiler_legacy", lambda: []),
    "task_id": ("", "_current_graph_task_id", lambda: -1),
    "dispatch_push": ("", "_push_on_torch_dispatch_stack", lambda mode: None),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_replacing_what_the_counter_uses_is_tampering(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, name, fake = TAMPERED[case]
    monkeypatch.setattr(getattr(torch._C, owner) if owner else torch._C, name, fake)
    monkeypatch.setattr(extract, "_BOUND", {})  # bound once per probe: a fresh probe here
    calls, routes, _ = counted(HONEST["arithmetic"], AUTOGRAD)
    assert calls >= 1 and f"{name} is not torch's own" in routes["tampering"]


def test_stopping_the_profiler_is_tampering() -> None:
    source = "def gradient(x):\n    torch.autograd._disable_profiler_legacy()\n    return 2 * x"
    _, routes, _ = counted(source, LIBRARY_MSE)
    assert routes == {"tampering": "the profiler was stopped"}


def test_popping_the_dispatch_mode_for_good_is_tampering() -> None:
    source = "def gradient(x):\n    torch._C._pop_torch_dispatch_stack(None)\n    return 2 * x"
    _, routes, _ = counted(source, LIBRARY_MSE)
    assert routes == {"tampering": "the grader's dispatch mode was popped"}


GRADIENT_FLOW = {
    # source of `loss(yhat, y)` -> the gradient that flows back to yhat (None: none flows)
    "def loss(yhat, y):\n    return ((yhat - y) ** 2).mean()": [1.0, 2.0],
    "def loss(yhat, y):\n    return torch.tensor((yhat - y).pow(2).mean().item()).requires_grad_()":
        None,
    "def loss(yhat, y):\n    return ((yhat.detach() - y) ** 2).mean()": None,
    "def loss(yhat, y):\n    return ((yhat.detach() - y) ** 2).mean() + 0 * yhat.sum()": [0.0, 0.0],
    "def loss(yhat, y):\n    return ((yhat - y) ** 2).mean().item()": None,
}  # fmt: skip


@pytest.mark.parametrize("source", sorted(GRADIENT_FLOW))
def test_the_gradient_that_flows_back_is_reported_and_not_counted(source: str) -> None:
    namespace: dict[str, object] = {"torch": torch}
    exec(source, namespace)
    yhat = torch.tensor([2.0, 4.0], requires_grad=True)
    call = {
        "function": "loss",
        "cases": [{"args": encode([yhat, torch.tensor([1.0, 2.0])]), "globals": encode({})}],
        "forbidden": list(AUTOGRAD),
        "input_gradients": True,
    }
    (case,) = decode(_call_cases(call, namespace))["cases"]
    flowed, target = case["input_gradients"]
    assert target is None and case["forbidden_calls"] == 0
    expected = GRADIENT_FLOW[source]
    assert (flowed is None) if expected is None else flowed.tolist() == expected


# The probe cell runs the zygote's pre-compiled code only where it is the grader's own.
TRUE_PAYLOAD = {"__dict__": {"x": {"__dict__": {"value": 3}}}}
FAKE_PROBE = (
    "def answer_request(request, namespace):\n"
    "    from IPython.display import display\n"
    f'    display({{{extract.MIME_TYPE!r}: \'{{"__dict__": {{"x": 99}}}}\'}}, raw=True)'
)


def probe_payloads(cell: str, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The payloads a probe cell displays, run in a notebook namespace where `x = 3`."""
    import IPython.display

    shown: list[object] = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw: shown.append(data))
    exec(cell, {"x": 3})
    return [json.loads(data[extract.MIME_TYPE]) for data in shown]  # type: ignore[index]


def preload(code: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtins, extract.PRELOADED_PROBE, code, raising=False)


def test_a_probe_runs_the_preloaded_code_without_compiling_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = extract.values_request(["x"])
    (cell,) = extract.probe_sources([request])
    broken = cell.replace(repr(extract._packed_source()), repr("not a source"))
    preload(extract.probe_code(), monkeypatch)
    assert probe_payloads(broken, monkeypatch) == [TRUE_PAYLOAD]
    monkeypatch.delattr(builtins, extract.PRELOADED_PROBE)
    assert probe_payloads(cell, monkeypatch) == [TRUE_PAYLOAD]  # the source it carries
    with pytest.raises(binascii.Error):
        probe_payloads(broken, monkeypatch)


# What a notebook may put in the preloaded code's place: the cell compiles its own source.
NOT_THE_GRADERS = {
    "its own probe": compile(FAKE_PROBE, extract.PROBE_NAME, "exec"),
    "the grader's, changed": extract.probe_code().replace(co_filename="elsewhere"),
    "not code": FAKE_PROBE,
}


@pytest.mark.parametrize("case", sorted(NOT_THE_GRADERS))
def test_a_probe_ignores_code_that_is_not_the_graders(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    preload(NOT_THE_GRADERS[case], monkeypatch)
    (cell,) = extract.probe_sources([extract.values_request(["x"])])
    assert probe_payloads(cell, monkeypatch) == [TRUE_PAYLOAD]


def _fake_module(name: str, **functions: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(functions)
    return module


# What the cell checks its code with, faked by the notebook: the probe fails (the notebook's
# loss), it never runs the notebook's code.
GENUINE_DUMP = marshal.dumps(extract.probe_code(), 2)
FAKED_TOOLS = {
    "marshal": _fake_module("marshal", dumps=lambda code, version: GENUINE_DUMP),
    "_hashlib": _fake_module("_hashlib", openssl_sha256={GENUINE_DUMP: None}.get),
}


@pytest.mark.parametrize("name", sorted(FAKED_TOOLS))
def test_a_probe_whose_digest_tools_are_faked_fails(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    preload(NOT_THE_GRADERS["its own probe"], monkeypatch)
    monkeypatch.setitem(sys.modules, name, FAKED_TOOLS[name])
    (cell,) = extract.probe_sources([extract.values_request(["x"])])
    with pytest.raises(RuntimeError, match="the notebook replaced marshal or hashlib"):
        probe_payloads(cell, monkeypatch)


def test_a_probe_refuses_a_replaced_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    (cell,) = extract.probe_sources([extract.values_request(["x"])])
    namespace = {"x": 3, "__builtins__": {**builtins.__dict__, "exec": lambda *args: None}}
    with pytest.raises(RuntimeError, match="replaced exec, compile or __import__"):
        exec(cell, namespace)
