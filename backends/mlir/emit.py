"""The vocabulary the lowering writes upstream MLIR in: xDSL's own ``arith``, ``math``, ``tensor``,
``linalg`` and ``scf`` op classes behind a few helpers.

An :class:`Emitter` inserts ops at one point (a function body, a ``linalg.generic`` body, a loop
body) and returns the SSA values they define, so a lowering rule reads like the arithmetic it
emits::

    y = e.mulf(x, e.f32(2.0))                                   # a scalar op inside a body
    out = e.empty(e.sizes(x), f32)                               # whole tensors
    (z,) = e.generic(2, [(x, identity(2)), (gamma, affine(2, [1]))], [(out, identity(2))],
                     [PARALLEL, PARALLEL], lambda b, args: [b.mulf(args[0], args[1])])

Sizes of tensors are ``int`` (static) or an ``index`` value (dynamic, from ``tensor.dim``).
Ops carry no fast-math flags: division and square root stay correctly rounded. IREE marks float
multiplies and adds contractable, so a multiply whose only use is an add may become a fused
multiply-add (a float result then differs by an ulp, within the tests' tolerance); the product that
activation quantization rounds has several uses and is never fused (a test pins the ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.builder import Builder
from xdsl.dialects import arith, math, scf, tensor
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    AffineMapAttr,
    ArrayAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    TensorType,
    f32,
    i1,
)
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.dialects.linalg.ops import FillOp, GenericOp, IndexOp, YieldOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.rewriter import InsertPoint

Size = int | SSAValue
"""A tensor dim: a static size or an ``index`` value."""

INDEX = IndexType()
PARALLEL = "parallel"
REDUCTION = "reduction"

BodyFn = Callable[["Emitter", Sequence[SSAValue]], Sequence[SSAValue]]
"""Builds a ``linalg.generic`` body: gets an emitter inside it and the block arguments (one scalar
per input, then one per output: the value accumulated so far), returns the values to yield."""


def tensor_type(sizes: Sequence[Size], element: Attribute) -> TensorType:
    """``tensor<...>`` of ``sizes`` (a dynamic size prints as ``?``)."""
    return TensorType(element, [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes])


def shape(value: SSAValue) -> tuple[int, ...]:
    """Static shape of a tensor value (``DYNAMIC_INDEX`` for ``?``)."""
    assert isinstance(value.type, TensorType), value.type
    return tuple(value.type.get_shape())


def element(value: SSAValue) -> Attribute:
    """Element type of a tensor value."""
    assert isinstance(value.type, TensorType), value.type
    return value.type.get_element_type()


def affine(num_dims: int, results: Sequence[int | None]) -> AffineMap:
    """A map of ``num_dims`` loop dims to ``results``: dim ``d`` for an int, the constant 0 for None."""
    exprs = [AffineExpr.constant(0) if r is None else AffineExpr.dimension(r) for r in results]
    return AffineMap(num_dims, 0, tuple(exprs))


def identity(num_dims: int) -> AffineMap:
    return AffineMap.identity(num_dims)


class Emitter:
    """Inserts ops at one insertion point (module docstring)."""

    def __init__(self, builder: Builder, facts: dict[SSAValue, object] | None = None) -> None:
        self.builder = builder
        #: what the lowering knows of values it made (shared by the emitters of one function)
        self.facts: dict[SSAValue, object] = {} if facts is None else facts

    @staticmethod
    def at_end(block: Block) -> Emitter:
        return Emitter(Builder(InsertPoint.at_end(block)))

    def insert(self, op: Operation) -> Operation:
        return self.builder.insert(op)

    def _r(self, op: Operation) -> SSAValue:
        return self.insert(op).results[0]

    # ------------------------------------------------------------------------------ constants

    def index(self, value: int) -> SSAValue:
        return self._r(arith.ConstantOp.from_int_and_width(value, INDEX))

    def int(self, value: int, type_: IntegerType) -> SSAValue:
        return self._r(arith.ConstantOp(IntegerAttr(value, type_)))

    def f32(self, value: float) -> SSAValue:
        return self._r(arith.ConstantOp(FloatAttr(value, f32)))

    # ------------------------------------------------------------------------------ scalar arithmetic

    def addf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.AddfOp(a, b))

    def subf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.SubfOp(a, b))

    def mulf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.MulfOp(a, b))

    def divf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.DivfOp(a, b))

    def maximumf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.MaximumfOp(a, b))

    def minimumf(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.MinimumfOp(a, b))

    def negf(self, a: SSAValue) -> SSAValue:
        return self._r(arith.NegfOp(a))

    def absf(self, a: SSAValue) -> SSAValue:
        return self._r(math.AbsFOp(a))

    def exp(self, a: SSAValue) -> SSAValue:
        return self._r(math.ExpOp(a))

    def sqrt(self, a: SSAValue) -> SSAValue:
        return self._r(math.SqrtOp(a))

    def trunc(self, a: SSAValue) -> SSAValue:
        return self._r(math.TruncOp(a))

    def cmpf(self, predicate: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.CmpfOp(a, b, predicate))

    def cmpi(self, predicate: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.CmpiOp(a, b, predicate))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.SelectOp(cond, a, b))

    def addi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.AddiOp(a, b))

    def subi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.SubiOp(a, b))

    def muli(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.MuliOp(a, b))

    def divui(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.DivUIOp(a, b))

    def remui(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.RemUIOp(a, b))

    def andi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.AndIOp(a, b))

    def shrui(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._r(arith.ShRUIOp(a, b))

    def bit(self, a: SSAValue, position: int) -> SSAValue:
        """Bit ``position`` of the integer ``a`` as an ``i1``."""
        shifted = a if position == 0 else self.shrui(a, self.int(position, a.type))  # type: ignore[arg-type]
        return self._r(arith.TruncIOp(shifted, i1))

    def extsi(self, a: SSAValue, type_: IntegerType) -> SSAValue:
        return self._r(arith.ExtSIOp(a, type_))

    def extui(self, a: SSAValue, type_: IntegerType) -> SSAValue:
        return self._r(arith.ExtUIOp(a, type_))

    def trunci(self, a: SSAValue, type_: IntegerType) -> SSAValue:
        return self._r(arith.TruncIOp(a, type_))

    def sitofp(self, a: SSAValue) -> SSAValue:
        return self._r(arith.SIToFPOp(a, f32))

    def fptosi(self, a: SSAValue, type_: IntegerType) -> SSAValue:
        return self._r(arith.FPToSIOp(a, type_))

    def to_f32(self, a: SSAValue) -> SSAValue:
        """A float scalar (bf16, f16, f32) as f32 (exact)."""
        return a if a.type == f32 else self._r(arith.ExtFOp(a, f32))

    def index_cast(self, a: SSAValue, type_: Attribute = INDEX) -> SSAValue:
        """An integer as an ``index`` (or an index as the integer ``type_``)."""
        return self._r(arith.IndexCastOp(a, type_))

    def loop_index(self, dim: int) -> SSAValue:
        """``linalg.index``: the current iteration's position along loop dim ``dim``."""
        return self._r(IndexOp(dim))

    # ------------------------------------------------------------------------------ tensors

    def sizes(self, value: SSAValue) -> list[Size]:
        """The dims of tensor ``value``: static ints, ``tensor.dim`` for dynamic ones."""
        return [d if d != DYNAMIC_INDEX else self._r(tensor.DimOp(value, self.index(i))) for i, d in enumerate(shape(value))]

    def empty(self, sizes: Sequence[Size], elem: Attribute) -> SSAValue:
        dynamic = [s for s in sizes if not isinstance(s, int)]
        return self._r(tensor.EmptyOp(dynamic, tensor_type(sizes, elem)))

    def filled(self, sizes: Sequence[Size], elem: Attribute, value: SSAValue) -> SSAValue:
        """A new tensor of ``sizes`` holding ``value`` everywhere (``linalg.fill``)."""
        empty = self.empty(sizes, elem)
        return self.insert(FillOp([value], [empty], [empty.type])).results[0]

    def generic(
        self,
        num_dims: int,
        inputs: Sequence[tuple[SSAValue, AffineMap]],
        outputs: Sequence[tuple[SSAValue, AffineMap]],
        iterators: Sequence[str],
        body: BodyFn,
    ) -> list[SSAValue]:
        """A ``linalg.generic`` over ``num_dims`` loops: ``inputs`` and ``outputs`` (init tensors) with
        their indexing maps, ``iterators`` (``parallel`` / ``reduction`` per loop), ``body`` (see
        :data:`BodyFn`). Returns the results (one per output)."""
        assert len(iterators) == num_dims
        block = Block(arg_types=[element(v) for v, _ in inputs] + [element(v) for v, _ in outputs])
        inner = Emitter.at_end(block)
        yielded = body(inner, block.args)
        inner.insert(YieldOp(*yielded))
        op = GenericOp(
            [v for v, _ in inputs],
            [v for v, _ in outputs],
            Region(block),
            [AffineMapAttr(m) for _, m in [*inputs, *outputs]],
            ArrayAttr([IteratorTypeAttr(IteratorType(i)) for i in iterators]),
            [v.type for v, _ in outputs],
        )
        return list(self.insert(op).results)

    def extract(self, source: SSAValue, indices: Sequence[SSAValue]) -> SSAValue:
        """``tensor.extract``: one element (inside a body: a gather)."""
        return self._r(tensor.ExtractOp(source, list(indices), element(source)))

    def slice(
        self, source: SSAValue, offsets: Sequence[Size], sizes: Sequence[Size], drop: Sequence[int] = ()
    ) -> SSAValue:
        """``tensor.extract_slice`` with unit strides; ``drop``: dims of size 1 the result leaves out."""
        result = tensor_type([s for d, s in enumerate(sizes) if d not in drop], element(source))
        op = tensor.ExtractSliceOp(source, list(offsets), list(sizes), [1] * len(sizes), result)
        return self._r(op)

    def insert_slice(
        self, source: SSAValue, dest: SSAValue, offsets: Sequence[Size], sizes: Sequence[Size]
    ) -> SSAValue:
        """``tensor.insert_slice`` of ``source`` (possibly rank-reduced) into ``dest`` with unit strides."""
        from xdsl.dialects.builtin import DenseArrayBase, i64

        static_offsets = [o if isinstance(o, int) else DYNAMIC_INDEX for o in offsets]
        static_sizes = [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes]
        op = tensor.InsertSliceOp.build(
            operands=[
                source,
                dest,
                [o for o in offsets if not isinstance(o, int)],
                [s for s in sizes if not isinstance(s, int)],
                [],
            ],
            result_types=[dest.type],
            properties={
                "static_offsets": DenseArrayBase.from_list(i64, static_offsets),
                "static_sizes": DenseArrayBase.from_list(i64, static_sizes),
                "static_strides": DenseArrayBase.from_list(i64, [1] * len(sizes)),
            },
        )
        return self._r(op)

    def collapse_last(self, value: SSAValue) -> SSAValue:
        """``[..., n, 1] -> [..., n]``: drop a trailing unit dim (``tensor.collapse_shape``)."""
        dims = shape(value)
        assert dims[-1] == 1
        groups = [[d] for d in range(len(dims) - 2)] + [[len(dims) - 2, len(dims) - 1]] if len(dims) > 1 else [[0]]
        result = TensorType(element(value), list(dims[:-1]))
        return self._reshape(tensor.CollapseShapeOp, value, groups, result)

    def expand_last(self, value: SSAValue) -> SSAValue:
        """``[..., n] -> [..., n, 1]``: add a trailing unit dim (``tensor.expand_shape``)."""
        dims = shape(value)
        sizes = self.sizes(value)
        groups = [[d] for d in range(len(dims) - 1)] + [[len(dims) - 1, len(dims)]]
        result = tensor_type([*sizes, 1], element(value))
        return self._r(
            tensor.ExpandShapeOp(
                value,
                [s for s in sizes if not isinstance(s, int)],
                _reassociation(groups),
                [*(s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes), 1],
                result,
            )
        )

    def split_last(self, value: SSAValue, outer: int, inner: int) -> SSAValue:
        """``[..., outer * inner] -> [..., outer, inner]`` (``tensor.expand_shape``)."""
        dims = shape(value)
        assert dims[-1] == outer * inner, (dims, outer, inner)
        sizes = self.sizes(value)
        groups = [[d] for d in range(len(dims) - 1)] + [[len(dims) - 1, len(dims)]]
        out_sizes = [*sizes[:-1], outer, inner]
        return self._r(
            tensor.ExpandShapeOp(
                value,
                [s for s in out_sizes if not isinstance(s, int)],
                _reassociation(groups),
                [s if isinstance(s, int) else DYNAMIC_INDEX for s in out_sizes],
                tensor_type(out_sizes, element(value)),
            )
        )

    def _reshape(self, cls: type[Operation], value: SSAValue, groups: list[list[int]], result: TensorType) -> SSAValue:
        op = cls.build(operands=[value], result_types=[result], properties={"reassociation": _reassociation(groups)})
        return self._r(op)

    def cast(self, value: SSAValue, type_: Attribute) -> SSAValue:
        """``tensor.cast`` to a type that differs only in which dims are static (a no-op if equal)."""
        if value.type == type_:
            return value
        assert isinstance(type_, TensorType)
        return self._r(tensor.CastOp(value, type_))

    def for_loop(
        self, lower: SSAValue, upper: SSAValue, carried: Sequence[SSAValue], body: Callable[[Emitter, SSAValue, Sequence[SSAValue]], Sequence[SSAValue]]
    ) -> list[SSAValue]:
        """``scf.for %i = lower to upper step 1 iter_args(carried)``: ``body(emitter, i, carried)``
        returns the next carried values; returns the final ones."""
        block = Block(arg_types=[INDEX, *(v.type for v in carried)])
        inner = Emitter.at_end(block)
        nxt = body(inner, block.args[0], block.args[1:])
        inner.insert(scf.YieldOp(*nxt))
        op = scf.ForOp(lower, upper, self.index(1), list(carried), Region(block))
        return list(self.insert(op).results)


def _reassociation(groups: list[list[int]]) -> ArrayAttr[ArrayAttr[IntegerAttr]]:
    from xdsl.dialects.builtin import i64

    return ArrayAttr([ArrayAttr([IntegerAttr(d, i64) for d in g]) for g in groups])


__all__ = [
    "INDEX",
    "PARALLEL",
    "REDUCTION",
    "BodyFn",
    "Emitter",
    "Size",
    "affine",
    "element",
    "identity",
    "shape",
    "tensor_type",
]
