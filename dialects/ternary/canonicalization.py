"""The canonicalization pattern of ``ternary.kernel`` (xDSL's ``canonicalize`` applies it)."""

from __future__ import annotations

from xdsl.ir import SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern

from mmfc.dialects.ternary.kernel import KernelOp, YieldOp


class DropUnusedKernelValues(RewritePattern):
    """Canonicalization: drop kernel results nobody uses and operands the body does not read."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: KernelOp, rewriter: PatternRewriter) -> None:
        block = op.body.block
        keep_out = [i for i, r in enumerate(op.results) if r.uses]
        keep_in = [i for i, a in enumerate(block.args) if a.uses]
        if not keep_out:
            return  # the whole kernel is dead: dce removes it
        if len(keep_out) == len(op.results) and len(keep_in) == len(block.args):
            return
        yield_op = block.last_op
        assert isinstance(yield_op, YieldOp)
        rewriter.replace(yield_op, YieldOp(*(yield_op.values[i] for i in keep_out)))
        for i in reversed(range(len(block.args))):
            if i not in keep_in:
                rewriter.erase_block_argument(block.args[i])
        new = KernelOp(
            grid=op.grid_sizes(),
            inputs=[op.inputs[i] for i in keep_in],
            input_tiles=[op.input_tiles.data[i] for i in keep_in],
            result_types=[op.results[i].type for i in keep_out],
            result_tiles=[op.result_tiles.data[i] for i in keep_out],
            body=rewriter.move_region_contents_to_new_regions(op.body),
        )
        new.attributes.update(op.attributes)
        new_results: list[SSAValue | None] = [None] * len(op.results)
        for j, i in enumerate(keep_out):
            new_results[i] = new.results[j]
        rewriter.replace(op, new, new_results)


__all__ = ["DropUnusedKernelValues"]
