from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from grader.extract import (
    MAX_PAYLOAD_CHARS,
    ModuleState,
    PayloadError,
    Unsupported,
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
