"""The one dtype table (``mmfc.dialects.dtypes``): its rows agree with numpy, xDSL and safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type, Float64Type, IntegerType

from mmfc.dialects import dtypes
from mmfc.dialects.weights import MemoryStore, open_store


@pytest.mark.parametrize("row", dtypes.DTYPES, ids=lambda d: d.code)
def test_rows_are_consistent(row: dtypes.Dtype) -> None:
    assert dtypes.by_code(row.code) is row and dtypes.by_name(row.code) is row
    for name in row.names:
        assert dtypes.by_name(name) is row
    if row.numpy is not None:
        assert row.numpy.itemsize == row.itemsize
        assert dtypes.of_numpy(row.numpy) is row
        assert dtypes.of_numpy(row.numpy.newbyteorder(">")) is row  # stored little-endian
    if row.element_type is not None:
        assert dtypes.of_element_type(row.element_type) is row


def test_float_rows() -> None:
    floats = {d.code: d for d in dtypes.DTYPES if d.is_float}
    assert sorted(floats) == ["BF16", "F16", "F32", "F64"]
    assert floats["BF16"].numpy is None and floats["BF16"].read_as == np.dtype("<f4")
    assert floats["BF16"].itemsize == 2
    assert isinstance(floats["BF16"].element_type, BFloat16Type)
    assert isinstance(floats["F16"].element_type, Float16Type)
    assert isinstance(floats["F32"].element_type, Float32Type)
    assert isinstance(floats["F64"].element_type, Float64Type)
    assert dtypes.by_name("I8").element_type == IntegerType(8) and not dtypes.by_name("I8").is_float
    assert dtypes.by_code("F8_E4M3") is not None and dtypes.by_code("F8_E4M3").read_as is None


def test_unknown_names() -> None:
    assert dtypes.by_code("C64") is None
    with pytest.raises(ValueError, match="unknown dtype 'f128'"):
        dtypes.by_name("f128")
    with pytest.raises(ValueError, match="complex64 cannot be stored"):
        dtypes.of_numpy(np.dtype(np.complex64))


def test_codes_are_what_safetensors_writes(tmp_path: Path) -> None:
    """The store writes each numpy row under its code; the safetensors library reads it back as the
    same numpy dtype."""
    arrays = {d.code: np.zeros((2, 3), d.numpy) for d in dtypes.DTYPES if d.numpy is not None}
    path = tmp_path / "all.safetensors"
    MemoryStore(arrays).save(path)
    written = open_store(path)
    assert {name: written.info(name).stored for name in arrays} == {code: code for code in arrays}
    for code, arr in load_file(str(path)).items():
        assert arr.dtype == dtypes.by_code(code).numpy
