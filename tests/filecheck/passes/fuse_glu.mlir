// fuse-glu: the GLU's split and SiLU(gate)·up go into the down projection's kernel (fuse-bitlinear's, or
// one fuse-glu builds), and the block's final residual add with them; halves not from one split, or
// used elsewhere, are left alone.
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=4},fuse-glu' | filecheck %s --check-prefix=FUSED
// RUN: mmfc opt %s --split-input-file -p 'fuse-glu{block-n=3}' | filecheck %s --check-prefix=ALONE
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=4},fuse-glu{residual=false}' | filecheck %s --check-prefix=NORES
// RUN: not mmfc opt %s -p 'fuse-glu{block-batch=-2}' 2>&1 | filecheck %s --check-prefix=BADOPT
// BADOPT: pass 'fuse-glu': block-batch must be >= 0 (0: not split), got -2

// The MLP half of a decode step: mlp_norm (residual + norm), gate_proj, split, SiLU·up, down_proj, and
// the block's final residual add.
func.func @glu(%o: tensor<?x8xf32>, %x: tensor<?x8xf32>, %mg: tensor<8xf32>, %gg: tensor<8xf32>, %wgu: !ternary.trits<24x8>, %sgu: f32, %dg: tensor<12xf32>, %wd: !ternary.trits<8x12>, %sd: f32) -> tensor<?x8xf32> {
  %m, %sum = ternary.residual_rmsnorm %o, %x, %mg : tensor<?x8xf32>, tensor<8xf32>
  %n = ternary.rmsnorm %m, %gg : tensor<?x8xf32>, tensor<8xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %wgu : tensor<?x8xi8>, !ternary.trits<24x8> -> tensor<?x24xi32>
  %gu = ternary.dequant %acc, %qs, %sgu : tensor<?x24xi32>, tensor<?x1xf32>, f32 -> tensor<?x24xf32>
  %gate, %up = ternary.split %gu : tensor<?x24xf32> -> tensor<?x12xf32>, tensor<?x12xf32>
  %p = ternary.silu_mul %gate, %up : tensor<?x12xf32>
  %pn = ternary.rmsnorm %p, %dg : tensor<?x12xf32>, tensor<12xf32>
  %pq, %pqs = ternary.quant_act %pn : tensor<?x12xf32> -> tensor<?x12xi8>, tensor<?x1xf32>
  %pacc = ternary.accum %pq, %wd : tensor<?x12xi8>, !ternary.trits<8x12> -> tensor<?x8xi32>
  %down = ternary.dequant %pacc, %pqs, %sd : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  %next = ternary.add %sum, %down : tensor<?x8xf32>
  func.return %next : tensor<?x8xf32>
}

// After fuse-bitlinear: the down kernel takes split and SiLU·up as its prologue, the final add as its
// epilogue, and the x + residual that fuse-bitlinear re-computed for it (each program its own slice).
// FUSED-LABEL: func.func @glu
// FUSED-NEXT:    %gu = ternary.kernel grid [4] (%o_1 = %o : tensor<?x8xf32>, %x_1 = %x : tensor<?x8xf32>, %mg_1 = %mg : tensor<8xf32>, %gg_1 = %gg : tensor<8xf32>, %wgu_1 = %wgu : !ternary.trits<24x8> tiled [0, *], %sgu_1 = %sgu : f32) -> (tensor<?x24xf32> tiled [*, 0]) {
// FUSED-NEXT:      %m, %sum = ternary.residual_rmsnorm %o_1, %x_1, %mg_1 : tensor<?x8xf32>, tensor<8xf32>
// FUSED:           ternary.yield %gu_1 : tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    %next = ternary.kernel grid [4] (%o_1 = %o : tensor<?x8xf32> tiled [*, 0], %x_1 = %x : tensor<?x8xf32> tiled [*, 0], %gu_1 = %gu : tensor<?x24xf32>, %dg_1 = %dg : tensor<12xf32>, %wd_1 = %wd : !ternary.trits<8x12> tiled [0, *], %sd_1 = %sd : f32) -> (tensor<?x8xf32> tiled [*, 0]) {
// FUSED-NEXT:      %sum = ternary.add %o_1, %x_1 : tensor<?x?xf32>
// FUSED-NEXT:      %gate, %up = ternary.split %gu_1 : tensor<?x24xf32> -> tensor<?x12xf32>, tensor<?x12xf32>
// FUSED-NEXT:      %p = ternary.silu_mul %gate, %up : tensor<?x12xf32>
// FUSED-NEXT:      %pn = ternary.rmsnorm %p, %dg_1 : tensor<?x12xf32>, tensor<12xf32>
// FUSED-NEXT:      %pq, %pqs = ternary.quant_act %pn : tensor<?x12xf32> -> tensor<?x12xi8>, tensor<?x1xf32>
// FUSED-NEXT:      %pacc = ternary.accum %pq, %wd_1 : tensor<?x12xi8>, !ternary.trits<?x12> -> tensor<?x?xi32>
// FUSED-NEXT:      %down = ternary.dequant %pacc, %pqs, %sd_1 : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
// FUSED-NEXT:      %next_1 = ternary.add %sum, %down : tensor<?x?xf32>
// FUSED-NEXT:      ternary.yield %next_1 : tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    func.return %next : tensor<?x8xf32>

// Alone: fuse-glu builds the down kernel itself; the gate projection stays unfused, and the residual
// add reads the norm's sum, split like the kernel's output.
// ALONE-LABEL: func.func @glu
// ALONE:         %gu = ternary.dequant %acc, %qs, %sgu : tensor<?x24xi32>, tensor<?x1xf32>, f32 -> tensor<?x24xf32>
// ALONE-NEXT:    %next = ternary.kernel grid [3] (%gu_1 = %gu : tensor<?x24xf32>, %dg_1 = %dg : tensor<12xf32>, %wd_1 = %wd : !ternary.trits<8x12> tiled [0, *], %sd_1 = %sd : f32, %sum_1 = %sum : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
// ALONE-NEXT:      %gate, %up = ternary.split %gu_1 : tensor<?x24xf32> -> tensor<?x12xf32>, tensor<?x12xf32>
// ALONE-NEXT:      %p = ternary.silu_mul %gate, %up : tensor<?x12xf32>
// ALONE-NEXT:      %pn = ternary.rmsnorm %p, %dg_1 : tensor<?x12xf32>, tensor<12xf32>
// ALONE:           %next_1 = ternary.add %sum_1, %down : tensor<?x?xf32>
// ALONE-NEXT:      ternary.yield %next_1 : tensor<?x?xf32>

// residual=false: the add stays outside.
// NORES-LABEL: func.func @glu
// NORES:         %down = ternary.kernel grid [4] (%gu_1 = %gu : tensor<?x24xf32>, %dg_1 = %dg : tensor<12xf32>, %wd_1 = %wd : !ternary.trits<8x12> tiled [0, *], %sd_1 = %sd : f32) -> (tensor<?x8xf32> tiled [*, 0]) {
// NORES-NEXT:      %gate, %up = ternary.split %gu_1
// NORES:         }
// NORES-NEXT:    %next = ternary.add %sum, %down : tensor<?x8xf32>

// -----
// Left alone: halves in the wrong order (SiLU on up), and a split whose half is also returned.
func.func @leave_alone(%gu: tensor<?x8xf32>, %dg: tensor<4xf32>, %wd: !ternary.trits<6x4>, %sd: f32) -> (tensor<?x6xf32>, tensor<?x6xf32>, tensor<?x4xf32>) {
  %gate, %up = ternary.split %gu : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xf32>
  %p = ternary.silu_mul %up, %gate : tensor<?x4xf32>
  %pn = ternary.rmsnorm %p, %dg : tensor<?x4xf32>, tensor<4xf32>
  %pq, %pqs = ternary.quant_act %pn : tensor<?x4xf32> -> tensor<?x4xi8>, tensor<?x1xf32>
  %pacc = ternary.accum %pq, %wd : tensor<?x4xi8>, !ternary.trits<6x4> -> tensor<?x6xi32>
  %down = ternary.dequant %pacc, %pqs, %sd : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
  %g2, %u2 = ternary.split %gu : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xf32>
  %p2 = ternary.silu_mul %g2, %u2 : tensor<?x4xf32>
  %pn2 = ternary.rmsnorm %p2, %dg : tensor<?x4xf32>, tensor<4xf32>
  %pq2, %pqs2 = ternary.quant_act %pn2 : tensor<?x4xf32> -> tensor<?x4xi8>, tensor<?x1xf32>
  %pacc2 = ternary.accum %pq2, %wd : tensor<?x4xi8>, !ternary.trits<6x4> -> tensor<?x6xi32>
  %down2 = ternary.dequant %pacc2, %pqs2, %sd : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
  func.return %down, %down2, %u2 : tensor<?x6xf32>, tensor<?x6xf32>, tensor<?x4xf32>
}

// FUSED-LABEL: func.func @leave_alone
// FUSED-NEXT:    %gate, %up = ternary.split %gu : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xf32>
// FUSED-NEXT:    %p = ternary.silu_mul %up, %gate : tensor<?x4xf32>
// FUSED-NEXT:    %down = ternary.kernel grid [4] (%p_1 = %p : tensor<?x4xf32>,
// FUSED:         %g2, %u2 = ternary.split %gu : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xf32>
// FUSED-NEXT:    %p2 = ternary.silu_mul %g2, %u2 : tensor<?x4xf32>
// FUSED-NEXT:    %down2 = ternary.kernel grid [4] (%p2_1 = %p2 : tensor<?x4xf32>,
// ALONE-LABEL: func.func @leave_alone
// ALONE-NOT:     ternary.kernel
// ALONE:         func.return

