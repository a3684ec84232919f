"""Per-layer statistics of compiled IR (``mmfc compile --stats``, the artifact manifest).

For each layer (``model.layers.{l}.*`` symbols; ``other`` for embedding, lower bounds, final norm and
head): the kernels a ``decode_step`` launches (``ternary.kernel`` ops; ``kernels`` is 0 before
fusion), the bytes of its ternary weights as stored (packed bytes once ``pack-weights`` ran, int8
trits before, the float masters before ``fold-weight-quant``), and its trit sparsity (the fraction of
zero trits, when the weights are trits). Unfused IR launches each of its compute ops on its own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue

from mmfc.dialects import dtypes, numerics
from mmfc.dialects import ternary as T

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_of(symbol: str) -> str:
    m = _LAYER.search(symbol)
    return m.group(1) if m else "other"


def _weight_symbols(value: SSAValue) -> set[str]:
    """Weight symbols reaching ``value`` through weight refs and unpack ops (not through compute)."""
    op = value.owner
    if isinstance(op, T.WeightOp):
        return {op.sym.string_value()}
    if isinstance(op, (T.UnpackOp, T.QuantWeightOp)):
        return _weight_symbols(op.operands[0])
    return set()


def _op_layer(op: Operation) -> str | None:
    symbols: set[str] = set()
    for operand in op.operands:
        symbols |= _weight_symbols(operand)
    layers = {layer_of(s) for s in symbols if layer_of(s) != "other"}
    if len(layers) == 1:
        return layers.pop()
    if layers:
        return "mixed"
    return "other" if symbols else None


def _zero_trits_per_byte(fmt: str) -> np.ndarray:
    """How many zero trits each byte value holds when packed in ``fmt`` (bytes no packer writes: 0)."""
    per = numerics.PACK_FORMATS[fmt]
    counts = np.zeros(256, np.int64)
    for value in range(256):
        try:
            counts[value] = int(np.count_nonzero(numerics.unpack(np.array([[value]], np.uint8), per, fmt) == 0))
        except ValueError:
            pass
    return counts


_ZERO_TRITS = {fmt: _zero_trits_per_byte(fmt) for fmt in numerics.PACK_FORMATS}


def _zero_trits(store: Any, sym: str, t: Any) -> tuple[int, int]:
    """``(zero trits, trits)`` of the ternary weight ``sym`` of type ``t`` (trits or packed), counted
    block by block (packed bytes through a per-byte table, the row padding taken off)."""
    n, k = t.get_shape()
    zeros = 0
    if isinstance(t, T.PackedType):
        fmt = t.format.data
        table = _ZERO_TRITS[fmt]
        for block in store.blocks(sym):
            zeros += int(np.bincount(block.reshape(-1), minlength=256).dot(table))
        pad = numerics.packed_row_bytes(k, fmt) * numerics.PACK_FORMATS[fmt] - k
        zeros -= n * pad  # the padding trits of every row are zeros
    else:
        for block in store.blocks(sym):
            zeros += int(block.size - np.count_nonzero(block))
    store.release(sym)
    return zeros, n * k


def compile_stats(module: ModuleOp, store: Any) -> dict[str, Any]:
    """The statistics dict (JSON-ready) for ``module`` with weights in ``store``.

    ``decode_launches_per_token``: the ``ternary.kernel`` ops of ``decode_step``, or, in IR with no
    kernel at all (``-O0``), its compute ops (each would be a launch of its own; weight reads and the
    return are none). ``ternary_weight_bytes``: the bytes of the ternary weights as stored (packed
    bytes, int8 trits, or the float masters ``quant_weight`` reads before folding);
    ``weight_bytes``: every tensor the IR reads. Counting zero trits reads the packed bytes, never
    unpacks them."""
    kernels: dict[str, int] = defaultdict(int)
    decode = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == "decode_step"), None)
    launches = 0
    if decode is not None:
        ops = list(decode.body.block.ops)
        fused = any(isinstance(op, T.KernelOp) for op in ops)
        for op in ops:
            if isinstance(op, T.KernelOp):
                launches += 1
                kernels[_op_layer(op) or "other"] += 1
            elif not fused and not isinstance(op, (T.WeightOp, func.ReturnOp)):
                launches += 1
    weight_bytes: dict[str, int] = defaultdict(int)
    zeros: dict[str, int] = defaultdict(int)
    trits: dict[str, int] = defaultdict(int)
    all_bytes = 0
    seen: set[str] = set()
    masters = {
        op.master.owner.sym.string_value()
        for op in module.walk()
        if isinstance(op, T.QuantWeightOp) and isinstance(op.master.owner, T.WeightOp)
    }
    for op in module.walk():
        if not isinstance(op, T.WeightOp):
            continue
        sym = op.sym.string_value()
        if sym in seen:
            continue
        seen.add(sym)
        t = op.result.type
        info = store.info(sym)
        stored = dtypes.by_code(info.stored)
        nbytes = int(np.prod(info.shape, dtype=np.int64)) * (stored.itemsize if stored is not None else 1)
        all_bytes += nbytes
        layer = layer_of(sym)
        if isinstance(t, (T.TritsType, T.PackedType)):
            weight_bytes[layer] += nbytes
            z, count = _zero_trits(store, sym, t)
            zeros[layer] += z
            trits[layer] += count
        elif sym in masters:
            weight_bytes[layer] += nbytes
    layers = sorted(set(kernels) | set(weight_bytes), key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x))
    rows = [
        {
            "layer": layer,
            "kernels": kernels.get(layer, 0),
            "ternary_weight_bytes": weight_bytes.get(layer, 0),
            "trit_sparsity": round(zeros[layer] / trits[layer], 4) if trits.get(layer) else None,
        }
        for layer in layers
    ]
    numbered = [r for r in rows if r["layer"].isdigit()]
    return {
        "layers": rows,
        "decode_launches_per_token": launches,
        "kernels_per_layer": sorted({r["kernels"] for r in numbered}) if numbered else [],
        "ternary_weight_bytes": sum(weight_bytes.values()),
        "weight_bytes": all_bytes,
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A table for the terminal."""
    lines = [f"{'layer':>6} {'kernels':>8} {'ternary bytes':>14} {'trit sparsity':>14}"]
    for r in stats["layers"]:
        sp = "-" if r["trit_sparsity"] is None else f"{r['trit_sparsity']:.3f}"
        lines.append(f"{r['layer']:>6} {r['kernels']:>8} {r['ternary_weight_bytes']:>14,} {sp:>14}")
    lines.append(
        f"decode launches per token: {stats['decode_launches_per_token']}   "
        f"ternary weights: {stats['ternary_weight_bytes'] / 1e6:.2f} MB   "
        f"all weights: {stats.get('weight_bytes', 0) / 1e6:.2f} MB"
    )
    return "\n".join(lines)
