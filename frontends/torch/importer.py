"""PyTorch -> ternary dialect: import MatMul-free models built from mmfc's blocks.

Two paths, one result (a ``builtin.module`` with ``prefill`` and ``decode_step`` entry functions, B and
T dynamic, plus a weight store holding every tensor by its state-dict name):

* **structural** for :class:`HGRNBitForCausalLM` and :class:`HGRNBitModel`: the blocks are known, so
  each block maps to one builder call (``dialects.builder``) -- no tracing, any size;
* **FX** for a user's own ``nn.Module``: ``torch.fx`` traces ``forward`` with the mmfc blocks
  (``RMSNorm``, ``BitLinear``, ``MLGRU``, ``GLU``, ``HGRNBitBlock``, ``nn.Embedding``) as leaf modules, so
  each block is one graph node whatever its inner Python loops (``torch.export`` would unroll the
  recurrence over T and fix dimensions of size 1). Each node maps to builder calls; ``+``, ``-``, ``*``
  between activations map to ternary elementwise ops; parameters read with ``get_attr`` become weight
  symbols. Anything else is an :class:`ImportError_` naming the module path and the op.

User modules follow one contract: ``forward(x)`` or ``forward(x, attention_mask)``, where ``x`` is
token ids (when the first block it meets is an ``nn.Embedding``) or hidden states ``[B, T, d]``; every
MLGRU / block call starts from the zero state (pass no state). The importer threads the recurrent
state explicitly: one ``[B, d]`` state input and output per MLGRU call, in call order. The entry
functions are then ``prefill(x [B,T,...], mask [B,T], h_0.. [B,d]) -> (y, h'_0..)`` and
``decode_step(x [B,...], h_0..) -> (y, h'_0..)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, i64
from xdsl.ir import Attribute, SSAValue

from mmfc.dialects import ternary as T
from mmfc.dialects.builder import (
    FuncBuilder,
    WeightForm,
    build_bitlinear,
    build_block,
    build_function,
    build_glu,
    build_mlgru,
    build_model,
    build_rmsnorm,
)
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.dtypes import by_code as dtype_by_code
from mmfc.dialects.weights import MemoryStore, WeightStore, bind
from mmfc.frontends.torch.modeling import (
    GLU,
    MLGRU,
    BitLinear,
    HGRNBitBlock,
    HGRNBitForCausalLM,
    HGRNBitModel,
    RMSNorm,
)

DYN = T.DYN
LEAF_TYPES = (RMSNorm, BitLinear, MLGRU, GLU, HGRNBitBlock, nn.Embedding)
_TORCH_TO_NAME = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16", torch.float64: "f64"}


class ImportError_(UserError):  # noqa: N801 - "ImportError" is a builtin
    """A module or op the importer cannot map; the message names the module path and the op."""


@dataclass
class ImportedModule:
    """The imported IR and the weight store its symbols refer to (bound to the module)."""

    module: ModuleOp
    store: WeightStore
    num_states: int
    state_dim: int


# ------------------------------------------------------------------------------------------ weights


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.numpy()


def store_from_module(model: nn.Module) -> MemoryStore:
    """An in-memory store over the module's parameters and buffers (views, not copies, on the CPU)."""
    tensors = {name: _numpy(t) for name, t in model.state_dict().items()}
    return MemoryStore(tensors, copy=False)


def _dtypes(model: nn.Module) -> dict[str, str]:
    """The element type each tensor has in the store :func:`store_from_module` makes (numpy has no
    bfloat16: bf16 tensors are stored upcast to float32, so the IR declares f32 for them)."""
    names = {n: _TORCH_TO_NAME[t.dtype] for n, t in model.state_dict().items() if t.dtype in _TORCH_TO_NAME}
    return {n: ("f32" if d == "bf16" else d) for n, d in names.items()}


def _forms(model: nn.Module, prefix: str = "") -> dict[str, WeightForm]:
    return {
        (prefix + name) if name else prefix.rstrip("."): WeightForm.TRITS if m.quantized else WeightForm.FLOAT
        for name, m in model.named_modules()
        if isinstance(m, BitLinear)
    }


# ------------------------------------------------------------------------------------------ structural


def import_model(model: nn.Module, entries: Sequence[str] = ("prefill", "decode_step")) -> ImportedModule:
    """Import an ``HGRNBitForCausalLM``, an ``HGRNBitModel`` or a user module built from mmfc blocks."""
    if isinstance(model, HGRNBitForCausalLM):
        return _import_causal_lm(model, entries)
    if isinstance(model, HGRNBitModel):
        return _import_causal_lm(model, entries)
    return _import_fx(model, entries)


def _import_causal_lm(model: HGRNBitForCausalLM | HGRNBitModel, entries: Sequence[str]) -> ImportedModule:
    """The known structure, block by block (a bare ``HGRNBitModel``: no head, names without ``model.``)."""
    config = model.config
    forms = _forms(model)
    if len(set(forms.values())) > 1:
        raise ImportError_(f"{type(model).__name__}: mixing float and quantized BitLinear layers is not supported")
    head = isinstance(model, HGRNBitForCausalLM)
    module = build_model(
        config,
        form=next(iter(forms.values()), WeightForm.FLOAT),
        dtypes=_dtypes(model),
        entries=entries,
        head=head,
        prefix="model." if head else "",
    )
    store = store_from_module(model)
    bind(module, store)
    return ImportedModule(module, store, config.num_hidden_layers, config.hidden_size)


# ------------------------------------------------------------------------------------------ FX


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, qualname)


_BINARY = {
    operator.add: T.AddOp,
    torch.add: T.AddOp,
    operator.sub: T.SubOp,
    torch.sub: T.SubOp,
    operator.mul: T.MulOp,
    torch.mul: T.MulOp,
}
_UNARY_FUNCS = {torch.sigmoid: T.SigmoidOp, nn.functional.silu: T.SiluOp}
_UNARY_METHODS = {"sigmoid": T.SigmoidOp}


def _input_dim(m: nn.Module) -> int:
    if isinstance(m, RMSNorm):
        return m.hidden_size
    if isinstance(m, BitLinear):
        return m.in_features
    if isinstance(m, (MLGRU, GLU)):
        return m.hidden_size
    if isinstance(m, HGRNBitBlock):
        return m.attn_norm.hidden_size
    raise AssertionError(m)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # FX raises many types for untraceable Python
        raise ImportError_(f"{type(model).__name__}.forward cannot be traced with torch.fx: {exc}") from None
    return fx.GraphModule(model, graph)


def _import_fx(model: nn.Module, entries: Sequence[str]) -> ImportedModule:
    gm = _trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise ImportError_(f"{type(model).__name__}.forward takes no input")
    data, extra = placeholders[0], placeholders[1:]
    mask_node = None
    for p in extra:
        if "mask" in p.target and mask_node is None:
            mask_node = p
        elif p.args == ():
            raise ImportError_(
                f"{type(model).__name__}.forward: input {p.target!r} is not supported "
                "(inputs are the data x and optionally attention_mask)"
            )
    kind, width = _classify_input(gm, data)
    mlgru_calls = [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), (MLGRU, HGRNBitBlock))]
    d_state = [_input_dim(gm.get_submodule(n.target)) for n in mlgru_calls]
    forms = _forms(model)
    dtypes = _dtypes(model)

    def entry(step: bool) -> Any:
        if kind == "ids":
            x_type: Attribute = TensorType(i64, (DYN,) if step else (DYN, DYN))
        else:
            x_type = TensorType(f32, (DYN, width) if step else (DYN, DYN, width))
        state_types = [TensorType(f32, (DYN, d)) for d in d_state]
        inputs = [x_type] + ([] if step else [TensorType(i64, (DYN, DYN))]) + state_types
        names = ["input_ids" if kind == "ids" else "hidden"] + ([] if step else ["attention_mask"])
        names += [f"h{i}" for i in range(len(state_types))]

        def body(fb: FuncBuilder, args: Sequence[SSAValue]) -> list[SSAValue]:
            states = list(args[1 if step else 2 :])
            mask = None if step else args[1]
            return _lower_graph(gm, fb, args[0], mask, mask_node, states)

        return build_function("decode_step" if step else "prefill", inputs, body, WeightForm.FLOAT, dtypes, forms, names)

    funcs = []
    for name in entries:
        if name not in ("prefill", "decode_step"):
            raise ValueError(f"unknown entry point {name!r}")
        funcs.append(entry(step=name == "decode_step"))
    module = ModuleOp(funcs)
    store = store_from_module(model)
    bind(module, store)
    return ImportedModule(module, store, len(d_state), d_state[0] if d_state else 0)


def _classify_input(gm: fx.GraphModule, data: fx.Node) -> tuple[str, int]:
    """('ids', V) when the input feeds an embedding first, else ('hidden', d)."""
    for user in data.users:
        if user.op == "call_module":
            m = gm.get_submodule(user.target)
            if isinstance(m, nn.Embedding):
                return "ids", m.num_embeddings
            if isinstance(m, LEAF_TYPES):
                return "hidden", _input_dim(m)
    for node in gm.graph.nodes:  # e.g. x + x before the first block: take the first block's width
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), LEAF_TYPES[:-1]):
            return "hidden", _input_dim(gm.get_submodule(node.target))
    raise ImportError_("cannot infer the input's width: forward reaches no mmfc block")


def _lower_graph(
    gm: fx.GraphModule,
    fb: FuncBuilder,
    x: SSAValue,
    mask: SSAValue | None,
    mask_node: fx.Node | None,
    states: list[SSAValue],
) -> list[SSAValue]:
    env: dict[fx.Node, Any] = {}
    new_states: list[SSAValue] = []
    state_iter = iter(states)
    first = True

    def value(a: Any, node: fx.Node) -> Any:
        if isinstance(a, fx.Node):
            return env[a]
        if a is None:
            return a
        if isinstance(a, (int, float)):
            return a
        raise ImportError_(f"node {node.name}: unsupported argument {a!r}")

    def lower_bound_arg(a: Any, node: fx.Node) -> SSAValue | None:
        if a is None:
            return None
        v = env.get(a) if isinstance(a, fx.Node) else None
        if isinstance(v, SSAValue):
            return v
        raise ImportError_(f"node {node.name}: a lower bound must be a parameter or buffer of the module, got {a!r}")

    for node in gm.graph.nodes:
        where = f"{node.name}"
        if node.op == "placeholder":
            if first:
                env[node] = x
                first = False
            elif node is mask_node:
                env[node] = mask
            else:
                env[node] = None
        elif node.op == "get_attr":
            t = _fetch_attr(gm, node.target)
            if not isinstance(t, torch.Tensor):
                raise ImportError_(f"get_attr {node.target}: not a tensor")
            if t.dtype not in _TORCH_TO_NAME:
                raise ImportError_(f"get_attr {node.target}: unsupported dtype {t.dtype}")
            # typed as the store holds it (fb.dtypes: bf16 parameters are stored upcast to f32)
            env[node] = fb.float_weight(node.target, tuple(t.shape))
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            path = node.target
            args = list(node.args) + [None] * 4
            kwargs = dict(node.kwargs)
            if isinstance(m, nn.Embedding):
                table = fb.float_weight(f"{path}.weight", (m.num_embeddings, m.embedding_dim))
                env[node] = fb.insert(T.EmbeddingOp(table, env[args[0]])).result
            elif isinstance(m, RMSNorm):
                env[node] = build_rmsnorm(fb, env[args[0]], f"{path}.weight", m.eps)
            elif isinstance(m, BitLinear):
                env[node] = build_bitlinear(fb, env[args[0]], path, m.out_features, m.norm.eps)
            elif isinstance(m, GLU):
                env[node] = build_glu(fb, env[args[0]], path, m.intermediate_size)
            elif isinstance(m, (MLGRU, HGRNBitBlock)):
                lb_arg = kwargs.get("lower_bound", args[1])
                mask_arg = kwargs.get("attention_mask", args[2])
                state_arg = kwargs.get("state", args[3])
                if state_arg is not None:
                    raise ImportError_(
                        f"module {path} ({type(m).__name__}): pass no state; the importer threads the "
                        "recurrent state through the entry functions"
                    )
                lb = lower_bound_arg(lb_arg, node)
                step_mask = None if mask is None else (env[mask_arg] if isinstance(mask_arg, fx.Node) else None)
                h0 = next(state_iter)
                if isinstance(m, MLGRU):
                    out, h = build_mlgru(fb, env[args[0]], path, lb, step_mask, h0, m.g_norm.eps)
                else:
                    eps = m.attn_norm.eps
                    out, h = build_block(fb, env[args[0]], path, m.mlp.intermediate_size, lb, step_mask, h0, eps)
                new_states.append(h)
                env[node] = (out, h)
            else:
                raise ImportError_(f"module {path} ({type(m).__name__}) is not an mmfc block and cannot be imported")
        elif node.op == "call_function":
            if node.target is operator.getitem and isinstance(env.get(node.args[0]), tuple):
                env[node] = env[node.args[0]][node.args[1]]
            elif node.target in _BINARY and len(node.args) == 2 and not node.kwargs:
                lhs, rhs = (value(a, node) for a in node.args)
                if not (isinstance(lhs, SSAValue) and isinstance(rhs, SSAValue)):
                    raise ImportError_(f"node {where}: {_fn_name(node.target)} with a Python scalar is not supported")
                if lhs.type != rhs.type:
                    raise ImportError_(f"node {where}: {_fn_name(node.target)} of {lhs.type} and {rhs.type} (no broadcasting)")
                env[node] = fb.insert(_BINARY[node.target](lhs, rhs)).result
            elif node.target in _UNARY_FUNCS and len(node.args) == 1:
                env[node] = fb.insert(_UNARY_FUNCS[node.target](env[node.args[0]])).result
            else:
                raise ImportError_(
                    f"node {where}: cannot map call to {_fn_name(node.target)} "
                    f"(from {_module_path(node)}); only mmfc blocks and +, -, *, sigmoid, silu are imported"
                )
        elif node.op == "call_method":
            if node.target in _UNARY_METHODS and len(node.args) == 1:
                env[node] = fb.insert(_UNARY_METHODS[node.target](env[node.args[0]])).result
            else:
                raise ImportError_(f"node {where}: cannot map method .{node.target}() (from {_module_path(node)})")
        elif node.op == "output":
            out = node.args[0]
            flat = list(out) if isinstance(out, (tuple, list)) else [out]
            results = []
            for item in flat:
                v = env[item] if isinstance(item, fx.Node) else item
                if isinstance(v, tuple):  # an MLGRU/block output returned whole: its activations
                    v = v[0]
                if not isinstance(v, SSAValue):
                    raise ImportError_(f"output: {item!r} is not a tensor computed by the model")
                results.append(v)
            return results + new_states
    raise AssertionError("graph without output")


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _fn_name(fn: Callable[..., Any] | str) -> str:
    if isinstance(fn, str):
        return fn
    mod = getattr(fn, "__module__", None) or ""
    return f"{mod}.{getattr(fn, '__name__', repr(fn))}".lstrip(".")


def _module_path(node: fx.Node) -> str:
    """The path of the innermost module whose ``forward`` made ``node`` (FX records the stack)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return "forward"
    innermost = next(reversed(stack.values()))
    return innermost[0] if isinstance(innermost, tuple) else str(innermost)


# ------------------------------------------------------------------------------------------ checkpoints


def import_checkpoint(directory: str | Path, entries: Sequence[str] = ("prefill", "decode_step")) -> ImportedModule:
    """Import a checkpoint folder without loading it into PyTorch: the IR is built from ``config.json``
    and the tensors stay where they are (a :class:`CheckpointStore`, memory-mapped, read lazily; bf16
    masters are not copied into a second float store). The folder passes the validation
    ``from_pretrained`` makes (``checkpoint.check_checkpoint``: names, shapes and dtypes from the
    headers, then every value, streamed tensor by tensor), so whatever the PyTorch loader refuses is
    refused here, in the same words."""
    from mmfc.frontends.torch.checkpoint import check_checkpoint
    from mmfc.frontends.torch.config import HGRNBitConfig

    directory = Path(directory)
    config = HGRNBitConfig.from_pretrained(directory)
    quantized = config.quantization_config is not None
    store = check_checkpoint(directory, config)
    dtypes: dict[str, str] = {}
    for name in store.names():
        stored = dtype_by_code(store.info(name).stored)
        if stored is not None and stored.is_float:
            dtypes[name] = store.info(name).stored
    module = build_model(config, WeightForm.TRITS if quantized else WeightForm.FLOAT, dtypes, entries)
    bind(module, store)
    return ImportedModule(module, store, config.num_hidden_layers, config.hidden_size)
