"""IR types as arrays: how every backend holds IR values on the host, and the checks on them.

The interpreter holds each IR value as a plain numpy object; every other backend converts its own
device values to and from this representation at its boundary (inputs, results, debug dumps):

===============================================  ===============================================
IR type                                          Python value
===============================================  ===============================================
``tensor<...xf32>`` (and store floats            ``np.ndarray`` float32 (bf16, f16, f64 tensors
``bf16`` / ``f16`` / ``f64``)                    are computed in f32, as numerics.py does)
``tensor<...xi8>`` / ``i32`` / ``i64``           ``np.ndarray`` int8 / int32 / int64
``!ternary.trits<NxK>``                          ``np.ndarray`` int8 ``[N, K]``
``!ternary.packed<NxK, fmt>``                    ``np.ndarray`` uint8 ``[N, packed_row_bytes(K)]``
``f32`` (a weight scale)                         ``np.float32`` scalar
``tensor<f32>``                                  0-d ``np.ndarray`` float32
===============================================  ===============================================

Dynamic dims (``?``) take whatever size the value has; static dims must match exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
)
from xdsl.ir import Attribute

from mmfc.dialects.numerics import packed_row_bytes
from mmfc.dialects.ternary import PackedType, TritsType

F32 = np.dtype(np.float32)

_STORE_FLOATS = (BFloat16Type, Float16Type, Float32Type, Float64Type)
_INT_DTYPES = {8: np.dtype(np.int8), 16: np.dtype(np.int16), 32: np.dtype(np.int32), 64: np.dtype(np.int64)}


def value_dtype(t: Attribute) -> np.dtype:
    """The numpy dtype the interpreter holds a value of type ``t`` in (see the module table)."""
    if isinstance(t, TritsType):
        return np.dtype(np.int8)
    if isinstance(t, PackedType):
        return np.dtype(np.uint8)
    elem = t.get_element_type() if isinstance(t, TensorType) else t
    if isinstance(elem, _STORE_FLOATS):
        return F32
    if isinstance(elem, IntegerType) and elem.width.data in _INT_DTYPES:
        return _INT_DTYPES[elem.width.data]
    raise TypeError(f"the interpreter has no value representation for type {t}")


def value_shape(t: Attribute) -> tuple[int, ...] | None:
    """The shape of the array holding a value of type ``t`` (``DYNAMIC_INDEX`` for ``?``); None for a
    scalar ``f32``. Packed weights hold bytes: ``[N, ceil(K / trits per byte)]``."""
    if isinstance(t, PackedType):
        n, k = t.get_shape()
        return (n, DYNAMIC_INDEX if k == DYNAMIC_INDEX else packed_row_bytes(k, t.format.data))
    if isinstance(t, TensorType | TritsType):
        return tuple(t.get_shape())
    return None


def is_scalar_type(t: Attribute) -> bool:
    """A builtin scalar type (``f32``, ``i64``, ...), held as a numpy scalar."""
    return not isinstance(t, TensorType | TritsType | PackedType)


def describe_value(v: Any) -> str:
    """``int32 array of shape (2, 3)`` / ``float32 scalar``, for messages."""
    if isinstance(v, np.ndarray):
        return f"{v.dtype} array of shape {v.shape}"
    if isinstance(v, np.generic):
        return f"{v.dtype} scalar"
    return f"{type(v).__name__} object"


def _a(dtype: np.dtype) -> str:
    """``a float32`` / ``an int64``."""
    return f"{'an' if str(dtype)[0] in 'aeiou' else 'a'} {dtype}"


def _dims_str(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d == DYNAMIC_INDEX else str(d) for d in shape) + "]"


def value_problem(v: Any, t: Attribute) -> str | None:
    """Why ``v`` is not a valid interpreter value of type ``t`` (None when it is)."""
    try:
        want_dtype = value_dtype(t)
    except TypeError as exc:
        return str(exc)
    shape = value_shape(t)
    if shape is None:
        if not isinstance(v, np.generic | np.ndarray) or np.ndim(v) != 0:
            return f"expected {_a(want_dtype)} scalar, got {describe_value(v)}"
        if np.asarray(v).dtype != want_dtype:
            return f"expected {_a(want_dtype)} scalar, got {describe_value(v)}"
        return None
    if not isinstance(v, np.ndarray):
        return f"expected {_a(want_dtype)} array of shape {_dims_str(shape)}, got {describe_value(v)}"
    if v.dtype != want_dtype:
        return f"expected {_a(want_dtype)} array, got {describe_value(v)}"
    if v.ndim != len(shape):
        return f"expected {len(shape)} dims {_dims_str(shape)}, got {describe_value(v)}"
    for d, (got, want) in enumerate(zip(v.shape, shape)):
        if want != DYNAMIC_INDEX and got != want:
            return f"expected shape {_dims_str(shape)}, got {describe_value(v)} (dim {d} differs)"
    return None


def coerce_input(v: Any, t: Attribute) -> tuple[Any, str | None]:
    """A caller's input for an argument of type ``t``, in the interpreter's representation.

    Returns ``(value, problem)``; ``problem`` says why the input does not fit (None when it does).
    Conversions are only those that lose nothing the IR promises: a float array for a store-float
    tensor (``bf16``/``f16``/``f64``: held as f32), and a 0-d array or Python number for an ``f32``
    scalar. Everything else must already have the exact dtype (an int32 array for an ``i64`` argument
    is a mistake, not something to cast silently).
    """
    if is_scalar_type(t):
        if isinstance(v, float | int) and not isinstance(v, bool) and value_dtype(t) == F32:
            v = np.float32(v)
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v[()]
        return v, value_problem(v, t)
    v = np.asarray(v) if isinstance(v, np.generic) else v
    if (
        isinstance(t, TensorType)
        and isinstance(t.get_element_type(), BFloat16Type | Float16Type | Float64Type)
        and isinstance(v, np.ndarray)
        and v.dtype.kind == "f"
    ):
        v = v.astype(np.float32)
    return v, value_problem(v, t)


def as_output(v: Any) -> np.ndarray:
    """A result as returned to callers: always an ``np.ndarray`` (a scalar becomes 0-d)."""
    return v if isinstance(v, np.ndarray) else np.asarray(v)
