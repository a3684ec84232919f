"""Run a module written by ``mmfc compile ... --emit mlir -o OUT.mlir`` with IREE, outside mmfc.

    iree-compile OUT.mlir --iree-hal-target-device=local \\
        --iree-hal-local-target-device-backends=llvm-cpu --iree-llvmcpu-target-cpu=host -o OUT.vmfb
    python run_upstream.py OUT.mlir OUT.vmfb 1,600,7

Greedy-decodes 8 tokens after the prompt ids with ``@prefill`` and ``@decode_step``: every function
takes its inputs, then the weight arguments in the order ``OUT.weights.json`` lists them (values in
``OUT.weights.safetensors``; bf16 tensors, if any, are passed with IREE's bf16 element type). Needs
only numpy, safetensors and iree-base-runtime.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import iree.runtime as rt

NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I8": np.int8, "U8": np.uint8, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (dtype code, array); bf16 as its raw 16-bit patterns."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        raw = np.frombuffer(data[8 + size + begin : 8 + size + end], dtype=NUMPY[spec["dtype"]])
        out[name] = (spec["dtype"], raw.reshape(spec["shape"]))
    return out


def main(mlir: str, vmfb: str, prompt: str, new_tokens: int = 8) -> list[int]:
    order = json.loads(Path(mlir).with_suffix(".weights.json").read_text())
    tensors = read_safetensors(Path(mlir).parent / order["weights_file"])
    config = rt.Config("local-task")
    context = rt.SystemContext(config=config)
    context.add_vm_module(rt.VmModule.copy_buffer(context.instance, Path(vmfb).read_bytes()))
    module = getattr(context.modules, order["module"])

    weights = []  # uploaded once, passed to every call
    for w in order["weights"]:
        code, array = tensors[w["name"]]
        element = rt.HalElementType.BFLOAT_16 if code == "BF16" else None
        weights.append(rt.asdevicearray(config.device, array.view(np.int8) if code == "U8" else array, element_type=element))

    states = [s for s in order["entries"]["decode_step"]["inputs"][1:]]
    width = [int(s["type"].split("x")[1]) for s in states]  # tensor<?xDxf32>
    ids = np.array([[int(t) for t in prompt.split(",")]], dtype=np.int64)
    h = [np.zeros((1, d), np.float32) for d in width]
    logits, *h = module.prefill(ids, np.ones_like(ids), *h, *weights)
    token = int(np.argmax(logits.to_host()[0, -1]))
    generated = [token]
    for _ in range(new_tokens - 1):
        logits, *h = module.decode_step(np.array([token], np.int64), *h, *weights)  # h stays on the device
        token = int(np.argmax(logits.to_host()[0]))
        generated.append(token)
    return generated


if __name__ == "__main__":
    print("new ids:", ",".join(str(t) for t in main(*sys.argv[1:4])))
