"""How a value of a ``ternary`` IR type crosses into upstream MLIR: its tensor type there, and the
host array that holds it (the ABI of the exported functions).

=========================================  ==========================  ==============================
ternary IR type                            upstream argument type      host array (numpy)
=========================================  ==========================  ==============================
``tensor<...xf32>``, ``xi8``/``i32``/``i64``  the same                   float32 / int8 / int32 / int64
``tensor<...xbf16>`` / ``xf16``            the same                    bfloat16 bits as uint16 / float16
``tensor<...xf64>``                        ``tensor<...xf32>``         float32 (the ops compute in f32)
``!ternary.trits<NxK>``                    ``tensor<NxKxi8>``          int8 trits
``!ternary.packed<NxK, fmt>``              ``tensor<NxBxi8>``          the packed bytes (B = ⌈K/4⌉ or
                                                                       ⌈K/5⌉), uint8 viewed as int8
``f32`` / ``tensor<f32>`` (a scale)        ``tensor<f32>``             0-d float32
=========================================  ==========================  ==============================

MLIR integers are signless, so packed bytes travel as ``i8`` and are read bit by bit. Only the
element type ``bf16`` needs an explicit element type when uploaded (numpy has none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
    f32,
    i8,
)
from xdsl.ir import Attribute

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.numerics import packed_row_bytes


def upstream_type(t: Attribute) -> TensorType:
    """The upstream MLIR type of a value of ternary IR type ``t`` (module table)."""
    if isinstance(t, T.TritsType):
        return TensorType(i8, t.get_shape())
    if isinstance(t, T.PackedType):
        n, k = t.get_shape()
        return TensorType(i8, [n, k if k == T.DYN else packed_row_bytes(k, t.format.data)])
    if isinstance(t, Float32Type):
        return TensorType(f32, [])
    if isinstance(t, TensorType):
        elem = t.get_element_type()
        if isinstance(elem, Float64Type):
            return TensorType(f32, t.get_shape())
        if isinstance(elem, Float32Type | Float16Type | BFloat16Type | IntegerType):
            return t
    raise UserError(f"the iree-cpu target cannot pass a value of type {t} to upstream MLIR")


def is_bf16(t: Attribute) -> bool:
    return isinstance(t, TensorType) and isinstance(t.get_element_type(), BFloat16Type)


def check_packed(raw: np.ndarray, fmt: str, what: str) -> None:
    """Packed bytes hold only codes the format writes (the unpacking reads any byte as some trits):
    no 0b11 pair in ``2bit``, no byte above 242 in ``base3``; a ``UserError`` naming ``what`` else."""
    b = raw.astype(np.uint8, copy=False)
    bad = np.any((b & 0x55) & ((b >> 1) & 0x55)) if fmt == "2bit" else np.any(b > 242)
    if bad:
        raise UserError(f"{what}: invalid {fmt} code in the packed bytes")


def host_array(value: Any, t: Attribute, what: str) -> np.ndarray:
    """``value`` (as :mod:`mmfc.dialects.values` holds a value of type ``t``; a bf16 tensor as its
    float32 values) as the host array of its upstream argument (module table). Packed bytes are
    checked (:func:`check_packed`)."""
    if isinstance(t, T.PackedType):
        raw = c_order(np.asarray(value, dtype=np.uint8))
        check_packed(raw, t.format.data, what)
        return raw.view(np.int8)
    if isinstance(t, T.TritsType):
        return c_order(np.asarray(value, dtype=np.int8))
    if isinstance(t, Float32Type):
        return np.asarray(value, dtype=np.float32).reshape(())
    assert isinstance(t, TensorType)
    elem = t.get_element_type()
    if isinstance(elem, BFloat16Type):
        # bf16 is the high half of an f32: exact for values read from a bf16 tensor
        bits = c_order(np.asarray(value, dtype=np.float32)).view(np.uint32)
        return (bits >> 16).astype(np.uint16)
    if isinstance(elem, Float16Type):
        return c_order(np.asarray(value, dtype=np.float16))
    if isinstance(elem, Float32Type | Float64Type):
        return c_order(np.asarray(value, dtype=np.float32))
    from mmfc.dialects.values import value_dtype

    return c_order(np.asarray(value, dtype=value_dtype(t)))


def host_dtype(t: Attribute) -> np.dtype:
    """The numpy dtype of the host array of a value of type ``t`` (module table)."""
    if isinstance(t, T.PackedType | T.TritsType):
        return np.dtype(np.int8)
    if is_bf16(t):
        return np.dtype(np.uint16)
    if isinstance(t, TensorType) and isinstance(t.get_element_type(), Float16Type):
        return np.dtype(np.float16)
    if isinstance(t, Float32Type) or (isinstance(t, TensorType) and isinstance(t.get_element_type(), Float64Type)):
        return np.dtype(np.float32)
    from mmfc.dialects.values import value_dtype

    return value_dtype(t)


def from_host_array(array: np.ndarray, t: Attribute) -> np.ndarray:
    """A result array of upstream type back in the representation of :mod:`mmfc.dialects.values`
    for ternary type ``t`` (packed bytes as uint8; a bf16 result as float32)."""
    if isinstance(t, T.PackedType):
        return np.asarray(array).view(np.uint8)
    if is_bf16(t):
        return (np.asarray(array, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array)


def c_order(array: object) -> np.ndarray:
    """A C-contiguous array, keeping a 0-d array 0-d (``np.ascontiguousarray`` makes it 1-d)."""
    return np.require(np.asarray(array), requirements="C")


__all__ = ["c_order", "check_packed", "from_host_array", "host_array", "host_dtype", "is_bf16", "upstream_type"]
