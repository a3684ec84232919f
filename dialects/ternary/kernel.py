"""The fused level: ``ternary.kernel`` (one launch of a grid of programs) and ``ternary.yield``.

The kernel's verifier checks the grid and the tile maps, then applies the rule of split legality of
:mod:`.tiling` through the body (:func:`~mmfc.dialects.ternary.tiling.body_splits`). Its
canonicalization pattern lives in :mod:`.canonicalization`.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser, UnresolvedOperand
from xdsl.pattern_rewriter import RewritePattern
from xdsl.printer import Printer
from xdsl.traits import (
    HasCanonicalizationPatternsTrait,
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    Pure,
    RecursiveMemoryEffect,
    RecursivelySpeculatable,
    ReturnLike,
)
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.ternary.tiling import body_splits, tile_type
from mmfc.dialects.ternary.types import DYN, TileMapAttr, shape_of


class _KernelIsolation(IsolatedFromAbove):
    """IsolatedFromAbove, with a message that says what to do."""

    def verify(self, op: Operation) -> None:
        for inner in op.walk():
            if inner is op:
                continue
            for i, v in enumerate(inner.operands):
                if not op.is_ancestor(v.owner) or v.owner is op:
                    raise VerifyException(
                        f"kernel: {inner.name} uses a value defined outside the kernel (its operand {i}); "
                        "pass it to the kernel as an operand"
                    )


class _KernelCanonicalization(HasCanonicalizationPatternsTrait):
    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        # imported here: the pattern builds kernels, so its module imports this one
        from mmfc.dialects.ternary.canonicalization import DropUnusedKernelValues

        return (DropUnusedKernelValues(),)


@irdl_op_definition
class KernelOp(IRDLOperation):
    """A fused kernel: one launch of a grid of programs, each running the body on its own tiles.

    Syntax::

        %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *],
                                       %g = %gamma : tensor<64xf32>,
                                       %w = %trits : !ternary.trits<32x64>,
                                       %s = %scale : f32) -> (tensor<?x32xf32> tiled [0, *]) {
          %n = ternary.rmsnorm %a, %g : tensor<?x64xf32>, tensor<64xf32>
          ...
          ternary.yield %y1 : tensor<?x32xf32>
        }

    **Grid.** ``grid [b_0, ..., b_{G-1}]`` has one entry per grid axis: axis g cuts the dims it
    splits into consecutive blocks of ``b_g`` indices, and there is one program per block, so
    ``ceil(extent_g / b_g)`` programs along g (all dims split by one axis have one extent). A program
    is a point ``(p_0, ..., p_{G-1})`` of the grid. ``grid []`` is a single program. The arithmetic
    (extents, program counts, bounds, tiles) is in :mod:`.tiling`.

    **Tiles.** Each operand and result carries a tile map (``tiled [..]``, one entry per dim; omitted
    when every dim is whole): an int g means grid axis g splits that dim, ``*`` means the dim is whole.
    Program p owns, of every operand and result, block ``p_g`` of each dim split by axis g and all of
    every whole dim. The body's block argument i is operand i restricted to that tile: its type is the
    operand type with split dims made ``?`` (:func:`~mmfc.dialects.ternary.tiling.tile_type`). Every
    result must be split by every grid axis exactly once, so the programs write disjoint tiles that
    cover it; an operand may leave axes out (it is then the same for every program along them, e.g. a
    weight).

    **The rule (what the verifier checks).** The body must not need a value produced by another
    program of the same launch. The verifier follows, for every value in the body, which grid axis
    splits each of its dims (:func:`~mmfc.dialects.ternary.tiling.body_splits`). Each body op states
    a ``TileRule`` (its ``tile_rule()``), whose index spaces
    (:func:`~mmfc.dialects.ternary.tiling.index_spaces`) say:

    * every op may only see its own tile: dims that share a label must be split the same way
      (e.g. both operands of ``ternary.mul``; ``accum``'s activation rows and result rows);
    * a dim the op reduces over, scans along, gathers from or broadcasts must be whole:
      the last axis K of ``rmsnorm``, ``residual_rmsnorm``, ``gate_norm``, ``quant_act``, ``accum``
      (K of both operands) and ``split``; K of ``unpack`` (trits of a row share bytes); the time
      axis T of ``scan``; the table's V axis of ``embedding``; the layer axis of ``lower_bounds``
      and ``row``; the size-1 scale dim ``dequant`` broadcasts; both axes of ``quant_weight``.
      Rows (leading dims), accum's N, and the channel axis d of ``scan``, ``scan_step``, ``mask``,
      ``lower_bound`` and the elementwise ops are independent and may be split;
    * each yielded value must be split exactly as its result's tile map says;
    * the body uses only its block arguments and values it defines (pass anything else, weights
      included, as an operand), and holds only ternary ops with a tiling rule (no nested kernel).

    The kernel as a whole is side-effect free when its body is, so xDSL's cse and dce treat it as
    a value; its canonicalization drops unused results and unread operands.
    """

    name = "ternary.kernel"

    inputs = var_operand_def()
    outputs = var_result_def()
    grid = prop_def(DenseArrayBase.constr(i64))
    input_tiles = prop_def(ArrayAttr[TileMapAttr])
    result_tiles = prop_def(ArrayAttr[TileMapAttr])
    body = region_def("single_block")

    traits = traits_def(
        _KernelIsolation(), RecursiveMemoryEffect(), RecursivelySpeculatable(), _KernelCanonicalization()
    )

    def __init__(
        self,
        grid: Sequence[int],
        inputs: Sequence[SSAValue | Operation],
        input_tiles: Sequence[TileMapAttr | Sequence[int | None]],
        result_types: Sequence[Attribute],
        result_tiles: Sequence[TileMapAttr | Sequence[int | None]],
        body: Region | None = None,
    ):
        """Build a kernel; without ``body``, the region gets one empty block whose arguments have
        the operands' tile types (fill it, ending with ``ternary.yield``)."""
        in_t = [t if isinstance(t, TileMapAttr) else TileMapAttr(t) for t in input_tiles]
        out_t = [t if isinstance(t, TileMapAttr) else TileMapAttr(t) for t in result_tiles]
        if body is None:
            arg_types = [tile_type(SSAValue.get(v).type, t) for v, t in zip(inputs, in_t, strict=True)]
            body = Region(Block(arg_types=arg_types))
        super().__init__(
            operands=[inputs],
            result_types=[result_types],
            properties={
                "grid": DenseArrayBase.from_list(i64, grid),
                "input_tiles": ArrayAttr(in_t),
                "result_tiles": ArrayAttr(out_t),
            },
            regions=[body],
        )

    def grid_sizes(self) -> tuple[int, ...]:
        """Block size of each grid axis."""
        return tuple(self.grid.get_values())

    # ---------------------------------------------------------------- verification

    def verify_(self) -> None:
        grid = self.grid_sizes()
        for g, b in enumerate(grid):
            if b < 1:
                raise VerifyException(f"kernel: grid axis {g} has block size {b}; expected >= 1")
        if len(self.input_tiles) != len(self.inputs):
            raise VerifyException(
                f"kernel: {len(self.inputs)} operands but {len(self.input_tiles)} input tile maps"
            )
        if len(self.result_tiles) != len(self.outputs):
            raise VerifyException(
                f"kernel: {len(self.outputs)} results but {len(self.result_tiles)} result tile maps"
            )
        if not self.outputs:
            raise VerifyException("kernel: expected at least one result")
        extents: dict[int, tuple[int, str]] = {}
        for kind, values, tiles in (
            ("operand", self.inputs, self.input_tiles.data),
            ("result", self.outputs, self.result_tiles.data),
        ):
            for i, (v, tile) in enumerate(zip(values, tiles)):
                self._verify_tile(kind, i, v.type, tile, len(grid), extents)
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(
                f"kernel: body has {len(block.args)} arguments, expected {len(self.inputs)} (one per operand)"
            )
        for i, (arg, v, tile) in enumerate(zip(block.args, self.inputs, self.input_tiles.data)):
            want = tile_type(v.type, tile)
            if arg.type != want:
                raise VerifyException(
                    f"kernel: body argument {i} has type {arg.type}, expected the tile type {want}"
                )
        yield_op = block.last_op
        if not isinstance(yield_op, YieldOp):
            raise VerifyException("kernel: body must end with ternary.yield")
        if len(yield_op.values) != len(self.outputs):
            raise VerifyException(
                f"kernel: body yields {len(yield_op.values)} values for {len(self.outputs)} results"
            )
        for i, (v, r, tile) in enumerate(zip(yield_op.values, self.outputs, self.result_tiles.data)):
            want = tile_type(r.type, tile)
            if v.type != want:
                raise VerifyException(
                    f"kernel: yielded value {i} has type {v.type}, expected the tile type {want}"
                )
        split = body_splits(self)
        for i, (v, tile) in enumerate(zip(yield_op.values, self.result_tiles.data)):
            got = TileMapAttr(split[v])
            if got != tile:
                raise VerifyException(
                    f"kernel: result {i} is tiled {tile.spelling()} but the body yields a value tiled "
                    f"{got.spelling()}"
                )

    def _verify_tile(
        self,
        kind: str,
        i: int,
        t: Attribute,
        tile: TileMapAttr,
        n_axes: int,
        extents: dict[int, tuple[int, str]],
    ) -> None:
        shape = shape_of(t)
        axes = tile.axes()
        if len(axes) != len(shape):
            raise VerifyException(
                f"kernel: {kind} {i} has {len(shape)} dims but tile map {tile.spelling()} has {len(axes)}"
            )
        for d, (a, n) in enumerate(zip(axes, shape)):
            if a is None:
                continue
            if a >= n_axes:
                raise VerifyException(
                    f"kernel: {kind} {i} is split by grid axis {a}, but the grid has {n_axes} axes"
                )
            where = f"{kind} {i} dim {d}"
            if n != DYN:
                seen = extents.setdefault(a, (n, where))
                if seen[0] != n:
                    raise VerifyException(
                        f"kernel: grid axis {a} splits dims of different extents: "
                        f"{seen[1]} has {seen[0]}, {where} has {n}"
                    )
        if kind == "result":
            used = {a for a in axes if a is not None}
            missing = sorted(set(range(n_axes)) - used)
            if missing:
                raise VerifyException(
                    f"kernel: result {i} (tiled {tile.spelling()}) is not split by grid axis {missing[0]}: "
                    "every program along it would write the same tile"
                )

    # ---------------------------------------------------------------- custom format

    def print(self, printer: Printer) -> None:
        printer.print_string(" grid [")
        printer.print_list(self.grid_sizes(), lambda b: printer.print_string(str(b)))
        printer.print_string("] (")

        def one_input(i: int) -> None:
            arg, v, tile = self.body.block.args[i], self.inputs[i], self.input_tiles.data[i]
            printer.print_block_argument(arg, print_type=False)
            printer.print_string(" = ")
            printer.print_operand(v)
            printer.print_string(" : ")
            printer.print_attribute(v.type)
            if not tile.is_whole():
                printer.print_string(f" tiled {tile.spelling()}")

        def one_result(i: int) -> None:
            tile = self.result_tiles.data[i]
            printer.print_attribute(self.outputs[i].type)
            if not tile.is_whole():
                printer.print_string(f" tiled {tile.spelling()}")

        printer.print_list(range(len(self.inputs)), one_input)
        printer.print_string(") -> (")
        printer.print_list(range(len(self.outputs)), one_result)
        printer.print_string(")")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        parser.parse_keyword("grid")
        grid = parser.parse_comma_separated_list(
            parser.Delimiter.SQUARE, lambda: parser.parse_integer(allow_boolean=False)
        )

        def tile_for(t: Attribute) -> TileMapAttr:
            if parser.parse_optional_keyword("tiled") is not None:
                return TileMapAttr.parse_list(parser)
            return TileMapAttr([None] * len(shape_of(t)))

        args: list[Parser.Argument] = []
        inputs: list[SSAValue] = []
        in_tiles: list[TileMapAttr] = []

        def one_input() -> None:
            arg = parser.parse_argument(expect_type=False)
            parser.parse_punctuation("=")
            operand: UnresolvedOperand = parser.parse_unresolved_operand()
            parser.parse_punctuation(":")
            t = parser.parse_type()
            tile = tile_for(t)
            inputs.append(parser.resolve_operand(operand, t))
            in_tiles.append(tile)
            args.append(arg.resolve(tile_type(t, tile) if len(tile.axes()) == len(shape_of(t)) else t))

        parser.parse_comma_separated_list(parser.Delimiter.PAREN, one_input)
        parser.parse_punctuation("->")
        result_types: list[Attribute] = []
        out_tiles: list[TileMapAttr] = []

        def one_result() -> None:
            t = parser.parse_type()
            result_types.append(t)
            out_tiles.append(tile_for(t))

        parser.parse_comma_separated_list(parser.Delimiter.PAREN, one_result)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region(args)
        op = cls(grid, inputs, in_tiles, result_types, out_tiles, body)
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op


@irdl_op_definition
class YieldOp(IRDLOperation):
    """End of a kernel body: the program's tiles of the kernel's results.

    Syntax::

        ternary.yield %a, %b : tensor<?x32xf32>, tensor<?x1xf32>
    """

    name = "ternary.yield"

    values = var_operand_def()

    traits = traits_def(Pure(), IsTerminator(), HasParent(KernelOp), ReturnLike())
    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, *values: SSAValue | Operation):
        super().__init__(operands=[values])


__all__ = ["KernelOp", "YieldOp"]
