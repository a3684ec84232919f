"""``mmfc info (--model DIR | --preset NAME | ARTIFACT) [--json]``: a model's shape, parameter count and
weight sizes.

Everything is computed from the config alone (no weights are created or read), so ``mmfc info --preset
2.7b`` answers at once; a compiled artifact is described from its config and manifest (target,
pipeline, kernels, the weights as stored). Sizes are in decimal units (1 MB = 10^6 bytes):

* ``bf16``: every parameter in 16 bits (what the released checkpoints hold);
* ``2bit`` / ``base3``: the ternary matrices packed 4 or 5 trits per byte, each row padded to whole bytes
  (``packed_row_bytes``); the embedding, norms and lower bounds stay 16-bit and are listed apart, and
  each ternary matrix keeps one float32 scale.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmfc.source import ModelSource, add_model_arguments, load_config, source_from_args

if TYPE_CHECKING:
    from mmfc.frontends.torch.config import HGRNBitConfig

PACK_FORMATS = ("2bit", "base3")  # the order they are printed in
BF16_BYTES = 2
SCALE_BYTES = 4  # one float32 weight_scale per ternary matrix


@dataclass(frozen=True)
class TernaryMatrix:
    """``count`` ternary matrices of shape ``[rows, cols]`` (N outputs x K inputs) named ``name``."""

    name: str
    count: int
    rows: int
    cols: int


def ternary_matrices(config: HGRNBitConfig) -> list[TernaryMatrix]:
    """Every BitLinear weight of the model, grouped by kind (``docs/model.md``, "Tensors")."""
    d, i, v, n_layers = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
        config.num_hidden_layers,
    )
    assert i is not None  # derived by HGRNBitConfig when the file leaves it null
    return [
        TernaryMatrix("attn.{i,f,g,o}_proj", 4 * n_layers, d, d),
        TernaryMatrix("mlp.gate_proj", n_layers, 2 * i, d),
        TernaryMatrix("mlp.down_proj", n_layers, d, i),
        TernaryMatrix("lm_head", 1, v, d),
    ]


def packed_bytes(config: HGRNBitConfig, fmt: str) -> int:
    """Bytes of all ternary matrices packed in ``fmt`` (``2bit`` or ``base3``), rows padded to bytes."""
    from mmfc.dialects.numerics import packed_row_bytes

    return sum(m.count * m.rows * packed_row_bytes(m.cols, fmt) for m in ternary_matrices(config))


def describe(config: HGRNBitConfig, source: ModelSource) -> dict[str, Any]:
    """The facts ``mmfc info`` prints, as a JSON-ready dict (sizes in bytes)."""
    params = config.num_parameters
    ternary = config.ternary_parameters
    embedding = config.vocab_size * config.hidden_size
    other = params - ternary - embedding  # norm vectors and lower bounds
    n_matrices = sum(m.count for m in ternary_matrices(config))
    out: dict[str, Any] = {
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "parameters": params,
        "ternary_parameters": ternary,
        "weight_bytes": {
            "bf16": params * BF16_BYTES,
            **{fmt: packed_bytes(config, fmt) for fmt in PACK_FORMATS},
            "embedding_bf16": embedding * BF16_BYTES,
            "norms_bf16": other * BF16_BYTES,
            "scales_fp32": n_matrices * SCALE_BYTES,
        },
    }
    if source.kind == "preset":
        out["source"] = {"preset": source.preset, "quantized": False}
    elif source.kind == "artifact":
        from mmfc.artifact import read_manifest

        assert source.path is not None
        manifest = read_manifest(source.path)
        files = manifest.get("files") or {}
        stats = manifest.get("stats") or {}
        out["source"] = {
            "artifact": str(source.path),
            "target": manifest["target"]["name"],
            "target_options": manifest["target"].get("options") or {},
            "pipeline": manifest.get("pipeline", ""),
            "files_bytes": sum(int(f.get("bytes", 0)) for f in files.values() if isinstance(f, dict)),
            "ternary_weight_bytes": stats.get("ternary_weight_bytes"),
            "kernels_per_layer": stats.get("kernels_per_layer"),
            "decode_launches_per_token": stats.get("decode_launches_per_token"),
            "created": manifest.get("created"),
            "mmfc_version": (manifest.get("versions") or {}).get("mmfc"),
            "tokenizer": any(name in files for name in ("tokenizer.json", "tokenizer.model")),
        }
    else:
        assert source.path is not None
        files = sorted(source.path.glob("*.safetensors"))
        out["source"] = {
            "checkpoint": str(source.path),
            "quantized": config.quantization_config is not None,
            "safetensors_bytes": sum(f.stat().st_size for f in files),
            "tokenizer": any((source.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model")),
        }
    return out


def format_bytes(n: int) -> str:
    """``n`` bytes with a decimal unit and three significant digits: 2.73 GB, 325 MB, 65.5 MB, 115 kB."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            value = n / size
            return (
                f"{value:.0f} {unit}"
                if value >= 100
                else f"{value:.1f} {unit}"
                if value >= 10
                else f"{value:.2f} {unit}"
            )
    return f"{n} B"


def render(facts: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe` (several lines, no trailing newline)."""
    b = facts["weight_bytes"]
    src = facts["source"]
    lines = [
        f"{facts['model_type']}  d={facts['hidden_size']}  layers={facts['num_hidden_layers']}  "
        f"heads={facts['num_heads']}  I={facts['intermediate_size']}  vocab={facts['vocab_size']}",
        f"parameters {facts['parameters']:,}  (ternary {facts['ternary_parameters']:,})",
        f"weights: bf16 {format_bytes(b['bf16'])} | 2bit {format_bytes(b['2bit'])} | "
        f"base3 {format_bytes(b['base3'])}  (packed: the ternary matrices)",
        f"  kept 16-bit beside them: embedding {format_bytes(b['embedding_bf16'])}, "
        f"norms + lower bounds {format_bytes(b['norms_bf16'])}; "
        f"scales {b['scales_fp32'] // SCALE_BYTES} x fp32",
    ]
    if "preset" in src:
        lines.append(f"source: preset {src['preset']} (random weights from a seed, float masters)")
    elif "artifact" in src:
        pipeline = src["pipeline"] or "no pass"
        kernels = "/".join(str(k) for k in src["kernels_per_layer"] or []) or "none (unfused)"
        ternary = src["ternary_weight_bytes"]
        tokenizer = "tokenizer included" if src["tokenizer"] else "no tokenizer (prompts as --prompt-ids)"
        lines.append(
            f"compiled artifact: {src['artifact']} (target {src['target']}, mmfc {src['mmfc_version']}, "
            f"{src['created']})\n"
            f"  pipeline: {pipeline}\n"
            f"  kernels per layer: {kernels}   launches per decode token: {src['decode_launches_per_token']}   "
            f"ternary weights as stored: {format_bytes(ternary) if ternary is not None else '?'}\n"
            f"  {format_bytes(src['files_bytes'])} of files, {tokenizer}; run it with `mmfc generate "
            f"{src['artifact']} ...`"
        )
    else:
        kind = (
            "pre-quantized (int8 trits + float32 scales, mmfc-ternary)"
            if src["quantized"]
            else "float masters (ternarized when loaded)"
        )
        tokenizer = "tokenizer found" if src["tokenizer"] else "no tokenizer (prompts as --prompt-ids)"
        lines.append(
            f"checkpoint: {src['checkpoint']}\n"
            f"  {kind}, {format_bytes(src['safetensors_bytes'])} of safetensors, {tokenizer}"
        )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info",
        help="shape, parameter count and packed weight sizes of a model",
        description="Print a model's shape, parameter count and weight sizes (bf16, 2bit, base3), "
        "computed from its config alone.",
    )
    add_model_arguments(p, positional="ARTIFACT")
    p.add_argument("--json", action="store_true", help="print the same facts as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    source = source_from_args(args, allow=("checkpoint", "preset", "artifact"))
    facts = describe(load_config(source), source)
    print(json.dumps(facts, indent=2) if args.json else render(facts))
    return 0
