"""Small weight stores for the pass filecheck tests (numpy + mmfc's store API only, no torch).

usage:
  make_store.py write OUT.safetensors SPEC [SPEC ...]
      SPEC is KIND:NAME:SHAPE[:DTYPE], SHAPE like 4x8 (or "" for a scalar), DTYPE f32 (default), bf16
      (stored as bf16 bytes), f16 or f64. KIND:
        float    random normal values (seeded by NAME, so every run writes the same store)
        ternary  a float tensor already ternary-valued: {-0.5, 0, +0.5} (the absmean pitfall)
        trits    int8 trits in {-1, 0, +1}
        scale    a float32 scale (positive)
  make_store.py dump STORE
      one line per tensor, sorted: "NAME: CODE [SHAPE]", then "base: PATH" when the store is layered
  make_store.py check-packed STORE NAME FORMAT TRITS_STORE TRITS_NAME
      prints "packed NAME ok" when STORE's NAME is numerics.pack of TRITS_STORE's TRITS_NAME
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from mmfc.dialects import dtypes
from mmfc.dialects import numerics as nm
from mmfc.dialects import weights as W


def _values(kind: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if kind == "float":
        return rng.standard_normal(shape).astype(np.float64)
    if kind == "ternary":
        return rng.integers(-1, 2, size=shape) * 0.5
    if kind == "trits":
        return rng.integers(-1, 2, size=shape).astype(np.int8)
    if kind == "scale":
        return np.asarray(rng.uniform(0.1, 1.0), dtype=np.float32).reshape(shape)
    raise SystemExit(f"unknown kind {kind!r}")


def _bf16_file(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Rewrite the float32 tensors named in ``tensors`` of a saved file as bf16 (the high halves)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out_header: dict[str, object] = {"__metadata__": header.pop("__metadata__", {})}
    converted: dict[str, tuple[dict[str, object], bytes]] = {}
    for name, spec in header.items():
        raw = body[spec["data_offsets"][0] : spec["data_offsets"][1]]
        if name in tensors:
            raw = (np.frombuffer(raw, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
            spec = {**spec, "dtype": "BF16"}
        converted[name] = (spec, raw)
    # largest item size first, as the store writes them, so that every tensor stays aligned
    chunks, offset = [], 0
    for name in sorted(converted, key=lambda k: (-dtypes.by_name(str(converted[k][0]["dtype"])).itemsize, k)):
        spec, raw = converted[name]
        out_header[name] = {**spec, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(out_header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def write(out: str, specs: list[str]) -> None:
    tensors: dict[str, np.ndarray] = {}
    bf16: dict[str, np.ndarray] = {}
    for spec in specs:
        kind, name, dims, *rest = spec.split(":")
        dtype = rest[0] if rest else "f32"
        shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        values = _values(kind, name, shape)
        if kind in ("float", "ternary"):
            # the dtype a store reads it as (bf16: float32 first, then cut to the high halves)
            values = values.astype(dtypes.by_name(dtype).read_as)
            if dtype == "bf16":
                bf16[name] = values
        tensors[name] = values
    W.MemoryStore(tensors).save(out)
    if bf16:
        _bf16_file(Path(out), bf16)


def dump(path: str) -> None:
    store = W.open_store(path)
    for name in store.own_names():
        info = store.info(name)
        print(f"{name}: {info.stored} [{', '.join(str(d) for d in info.shape)}]")
    if store.base is not None:
        print(f"base: {Path(str(store.base.path)).name}")


def check_packed(path: str, name: str, fmt: str, trits_path: str, trits_name: str) -> None:
    packed = W.open_store(path).get(name)
    trits = W.open_store(trits_path).get(trits_name)
    if packed.dtype != np.uint8 or not np.array_equal(packed, nm.pack(trits, fmt)):
        raise SystemExit(f"packed {name} differs from numerics.pack of {trits_name}")
    print(f"packed {name} ok")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "write":
        write(args[0], args[1:])
    elif command == "dump":
        dump(args[0])
    elif command == "check-packed":
        check_packed(*args)
    else:
        raise SystemExit(__doc__)
