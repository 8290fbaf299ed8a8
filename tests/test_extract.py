from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from grader.extract import (
    AUTOGRAD,
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


# Each notebook derives the gradient of sum(x ** 2) with autograd in its own way.
AUTOGRAD_ROUTES = {
    "backward": "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    (x ** 2).sum().backward()\n    return x.grad",
    "autograd_grad": "def gradient(x):\n    x = x.clone().requires_grad_(True)\n"
    "    return torch.autograd.grad((x ** 2).sum(), x)[0]",
    "imported_grad": "from torch.autograd import grad\n\ndef gradient(x):\n"
    "    x = x.clone().requires_grad_(True)\n    return grad((x ** 2).sum(), x)[0]",
    "imported_backward": "from torch.autograd import backward\n\ndef gradient(x):\n"
    "    x = x.clone().requires_grad_(True)\n    backward((x ** 2).sum())\n    return x.grad",
    "torch_func": "def gradient(x):\n    return torch.func.grad(lambda x: (x ** 2).sum())(x)",
}


def forbidden_calls(source: str, forbidden: tuple[str, ...]) -> tuple[int, dict[str, object]]:
    """Calls of `forbidden` counted while `gradient(tensor([1, 2]))`, defined by `source`, runs;
    and the notebook's namespace afterwards."""
    namespace: dict[str, object] = {"torch": torch}
    exec(source, namespace)
    call = {
        "function": "gradient",
        "cases": [{"args": encode([torch.tensor([1.0, 2.0])]), "globals": encode({})}],
        "forbidden": list(forbidden),
    }
    (case,) = decode(_call_cases(call, namespace))["cases"]
    assert "error" not in case, case
    assert case["output"].tolist() == [2.0, 4.0]
    return case["forbidden_calls"], namespace


@pytest.mark.parametrize("route", sorted(AUTOGRAD_ROUTES))
def test_every_route_to_autograd_is_counted(route: str) -> None:
    originals = {name: getattr(torch.autograd, name) for name in ("grad", "backward")}
    calls, namespace = forbidden_calls(AUTOGRAD_ROUTES[route], AUTOGRAD)
    assert calls >= 1
    # The library and the notebook's own names are given back untouched.
    assert {name: getattr(torch.autograd, name) for name in originals} == originals
    for name, original in originals.items():
        if name in namespace:
            assert namespace[name] is original


def test_a_gradient_by_hand_calls_nothing_forbidden() -> None:
    calls, _ = forbidden_calls("def gradient(x):\n    return 2 * x", AUTOGRAD)
    assert calls == 0


def test_an_imported_library_function_is_counted_under_its_new_name() -> None:
    source = (
        "from torch.nn.functional import mse_loss as library_mse\n\n"
        "def gradient(x):\n    library_mse(x, x)\n    return 2 * x"
    )
    calls, namespace = forbidden_calls(source, ("torch.nn.functional.mse_loss",))
    assert calls == 1
    assert namespace["library_mse"] is torch.nn.functional.mse_loss
