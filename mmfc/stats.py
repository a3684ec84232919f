"""Per-layer statistics of compiled IR (``mmfc compile --stats``, the artifact manifest).

For each layer (``model.layers.{l}.*`` symbols; ``other`` for embedding, lower bounds, final norm and
head): the kernels a ``decode_step`` launches (``ternary.kernel`` ops; before fusion, each ``accum``
counts as one launch-sized unit and ``kernels`` is reported as 0), the bytes of its ternary weights as
stored (packed bytes once ``pack-weights`` ran, int8 trits before), and its trit sparsity (the
fraction of zero trits).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue

from mmfc.dialects import numerics
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


def compile_stats(module: ModuleOp, store: Any) -> dict[str, Any]:
    """The statistics dict (JSON-ready) for ``module`` with weights in ``store``."""
    kernels: dict[str, int] = defaultdict(int)
    decode = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == "decode_step"), None)
    launches = 0
    if decode is not None:
        for op in decode.body.block.ops:
            if isinstance(op, T.KernelOp):
                launches += 1
                kernels[_op_layer(op) or "other"] += 1
    weight_bytes: dict[str, int] = defaultdict(int)
    zeros: dict[str, int] = defaultdict(int)
    trits: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for op in module.walk():
        if not isinstance(op, T.WeightOp):
            continue
        sym = op.sym.string_value()
        t = op.result.type
        if sym in seen or not isinstance(t, (T.TritsType, T.PackedType)):
            continue
        seen.add(sym)
        layer = layer_of(sym)
        data = np.asarray(store.get(sym))
        weight_bytes[layer] += int(data.nbytes)
        n, k = t.get_shape()
        if isinstance(t, T.PackedType):
            data = numerics.unpack(data, k, t.format.data)
        trits[layer] += int(data.size)
        zeros[layer] += int(np.count_nonzero(data == 0))
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
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A table for the terminal."""
    lines = [f"{'layer':>6} {'kernels':>8} {'ternary bytes':>14} {'trit sparsity':>14}"]
    for r in stats["layers"]:
        sp = "-" if r["trit_sparsity"] is None else f"{r['trit_sparsity']:.3f}"
        lines.append(f"{r['layer']:>6} {r['kernels']:>8} {r['ternary_weight_bytes']:>14,} {sp:>14}")
    lines.append(
        f"decode launches per token: {stats['decode_launches_per_token']}   "
        f"ternary weights: {stats['ternary_weight_bytes'] / 1e6:.2f} MB"
    )
    return "\n".join(lines)
