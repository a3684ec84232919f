"""The one table of tensor element types: safetensors code <-> numpy dtype <-> xDSL element type <-> size.

Every place that stores, reads or declares a weight looks its dtype up here: the weight store (which
codes it can read and how big an item is), the IR builder (which element type a float master is
declared with), the passes and backends (which code a declared element type must be stored as), and
the tests' store writers.

A row (:class:`Dtype`):

* ``code``: the safetensors dtype code written in file headers (``"F32"``, ``"BF16"``, ``"I8"``, ...);
* ``itemsize``: bytes per element on disk;
* ``numpy``: the little-endian numpy dtype the bytes are, or None where numpy has none (``BF16`` and
  the float8 kinds);
* ``element_type``: the xDSL element type a tensor of this dtype has in mmfc IR, or None where mmfc
  IR has none (unsigned integers, booleans, float8);
* ``names``: other spellings :func:`by_name` accepts (``"f32"``, ``"float32"``; torch's and numpy's
  names of the dtype).

numpy has no bfloat16: a ``BF16`` tensor is read as float32 (bf16 is the high half of an f32), see
:attr:`Dtype.read_as`. The float8 kinds are known by size only (files holding them are validated and
copied byte for byte, never read as arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type, Float64Type, IntegerType
from xdsl.ir import Attribute


@dataclass(frozen=True)
class Dtype:
    """One element type (see the module docstring)."""

    code: str
    itemsize: int
    numpy: np.dtype | None
    element_type: Attribute | None
    names: tuple[str, ...] = field(default=())

    @property
    def is_float(self) -> bool:
        """A floating-point type mmfc computes with (read as float32): F16, BF16, F32, F64."""
        return isinstance(self.element_type, BFloat16Type | Float16Type | Float32Type | Float64Type)

    @property
    def read_as(self) -> np.dtype | None:
        """The numpy dtype a weight store returns for this code: ``numpy``, float32 for ``BF16``,
        None when mmfc cannot read it as an array (float8)."""
        if self.code == "BF16":
            return np.dtype("<f4")
        return self.numpy


DTYPES: tuple[Dtype, ...] = (
    Dtype("BOOL", 1, np.dtype("|b1"), None, ("bool",)),
    Dtype("U8", 1, np.dtype("|u1"), None, ("uint8",)),
    Dtype("I8", 1, np.dtype("|i1"), IntegerType(8), ("i8", "int8")),
    Dtype("I16", 2, np.dtype("<i2"), IntegerType(16), ("i16", "int16")),
    Dtype("U16", 2, np.dtype("<u2"), None, ("uint16",)),
    Dtype("F16", 2, np.dtype("<f2"), Float16Type(), ("f16", "float16", "half")),
    Dtype("BF16", 2, None, BFloat16Type(), ("bf16", "bfloat16")),
    Dtype("I32", 4, np.dtype("<i4"), IntegerType(32), ("i32", "int32")),
    Dtype("U32", 4, np.dtype("<u4"), None, ("uint32",)),
    Dtype("F32", 4, np.dtype("<f4"), Float32Type(), ("f32", "float32", "float")),
    Dtype("F64", 8, np.dtype("<f8"), Float64Type(), ("f64", "float64", "double")),
    Dtype("I64", 8, np.dtype("<i8"), IntegerType(64), ("i64", "int64")),
    Dtype("U64", 8, np.dtype("<u8"), None, ("uint64",)),
    Dtype("F8_E4M3", 1, None, None),
    Dtype("F8_E5M2", 1, None, None),
    Dtype("F8_E8M0", 1, None, None),
)

_BY_CODE: dict[str, Dtype] = {d.code: d for d in DTYPES}
_BY_NAME: dict[str, Dtype] = {name: d for d in DTYPES for name in (d.code, *d.names)}
_BY_NUMPY: dict[np.dtype, Dtype] = {d.numpy: d for d in DTYPES if d.numpy is not None}


def by_code(code: str) -> Dtype | None:
    """The row of a safetensors code (``"F32"``), or None for a code mmfc does not know."""
    return _BY_CODE.get(code)


def by_name(name: str) -> Dtype:
    """The row of a code or another spelling (``"F32"``, ``"f32"``, ``"float32"``, ``"bf16"``, ...);
    ``ValueError`` for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}") from None


def of_numpy(dtype: np.dtype) -> Dtype:
    """The row an array of ``dtype`` is stored as (either byte order); ``ValueError`` when safetensors
    has no code for it (complex, object, strings, ...)."""
    dtype = np.dtype(dtype)
    found = _BY_NUMPY.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if found is None:
        raise ValueError(f"arrays of dtype {dtype} cannot be stored in safetensors")
    return found


def of_element_type(element_type: Attribute) -> Dtype | None:
    """The row of an IR element type (``f32`` -> ``F32``, ``bf16`` -> ``BF16``), or None."""
    for d in DTYPES:
        if d.element_type is not None and d.element_type == element_type:
            return d
    return None


__all__ = ["DTYPES", "Dtype", "by_code", "by_name", "of_element_type", "of_numpy"]
