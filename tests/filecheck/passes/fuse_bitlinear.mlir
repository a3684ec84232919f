// fuse-bitlinear: rmsnorm -> quant_act -> accum -> dequant chains become kernels whose grid splits the
// weight's N (block-n; block-batch adds a row split); projections of one input share a kernel; a norm
// read only by the kernel moves in; weights and quant_weight stay outside; what cannot be one legal
// launch is left alone.
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=8}' | filecheck %s
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=4 block-batch=2}' | filecheck %s --check-prefix=BATCH
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{recompute-residual=false}' | filecheck %s --check-prefix=NORECOMPUTE
// RUN: not mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=0}' 2>&1 | filecheck %s --check-prefix=BADOPT
// BADOPT: pass 'fuse-bitlinear': block-n must be >= 1, got 0

// The MLGRU's i/f/g projections read one input: one kernel, attn_norm absorbed (trits weights).
func.func @ifg(%x: tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %attn_g = ternary.weight @l0.attn_norm.weight : tensor<16xf32>
  %a = ternary.rmsnorm %x, %attn_g : tensor<?x16xf32>, tensor<16xf32>
  %ig = ternary.weight @l0.i_proj.norm.weight : tensor<16xf32>
  %iw = ternary.weight @l0.i_proj.weight : !ternary.trits<16x16>
  %is = ternary.weight @l0.i_proj.weight_scale : f32
  %in = ternary.rmsnorm %a, %ig : tensor<?x16xf32>, tensor<16xf32>
  %iq, %iqs = ternary.quant_act %in : tensor<?x16xf32> -> tensor<?x16xi8>, tensor<?x1xf32>
  %iacc = ternary.accum %iq, %iw : tensor<?x16xi8>, !ternary.trits<16x16> -> tensor<?x16xi32>
  %i = ternary.dequant %iacc, %iqs, %is : tensor<?x16xi32>, tensor<?x1xf32>, f32 -> tensor<?x16xf32>
  %fg = ternary.weight @l0.f_proj.norm.weight : tensor<16xf32>
  %fw = ternary.weight @l0.f_proj.weight : !ternary.trits<16x16>
  %fs = ternary.weight @l0.f_proj.weight_scale : f32
  %fn = ternary.rmsnorm %a, %fg : tensor<?x16xf32>, tensor<16xf32>
  %fq, %fqs = ternary.quant_act %fn : tensor<?x16xf32> -> tensor<?x16xi8>, tensor<?x1xf32>
  %facc = ternary.accum %fq, %fw : tensor<?x16xi8>, !ternary.trits<16x16> -> tensor<?x16xi32>
  %f = ternary.dequant %facc, %fqs, %fs : tensor<?x16xi32>, tensor<?x1xf32>, f32 -> tensor<?x16xf32>
  %gg = ternary.weight @l0.g_proj.norm.weight : tensor<16xf32>
  %gw = ternary.weight @l0.g_proj.weight : !ternary.trits<16x16>
  %gs = ternary.weight @l0.g_proj.weight_scale : f32
  %gn = ternary.rmsnorm %a, %gg : tensor<?x16xf32>, tensor<16xf32>
  %gq, %gqs = ternary.quant_act %gn : tensor<?x16xf32> -> tensor<?x16xi8>, tensor<?x1xf32>
  %gacc = ternary.accum %gq, %gw : tensor<?x16xi8>, !ternary.trits<16x16> -> tensor<?x16xi32>
  %g = ternary.dequant %gacc, %gqs, %gs : tensor<?x16xi32>, tensor<?x1xf32>, f32 -> tensor<?x16xf32>
  func.return %i, %f, %g : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// CHECK-LABEL: func.func @ifg
// The weights stay outside; attn_norm moved in (its only reader was the group).
// CHECK-NOT:     ternary.rmsnorm
// CHECK:         %i, %f, %g = ternary.kernel grid [8] (%x_1 = %x : tensor<?x16xf32>, %attn_g_1 = %attn_g : tensor<16xf32>, %ig_1 = %ig : tensor<16xf32>, %iw_1 = %iw : !ternary.trits<16x16> tiled [0, *], %is_1 = %is : f32, %fg_1 = %fg : tensor<16xf32>, %fw_1 = %fw : !ternary.trits<16x16> tiled [0, *], %fs_1 = %fs : f32, %gg_1 = %gg : tensor<16xf32>, %gw_1 = %gw : !ternary.trits<16x16> tiled [0, *], %gs_1 = %gs : f32) -> (tensor<?x16xf32> tiled [*, 0], tensor<?x16xf32> tiled [*, 0], tensor<?x16xf32> tiled [*, 0]) attributes {label = "l0.i_proj+f_proj+g_proj"} {
// The row statistics of %a are computed once (one rms_normalize); each projection scales the
// normalized rows by its own gamma (one scale each). No other norm or scale in the body.
// CHECK-NEXT:      %a = ternary.rmsnorm %x_1, %attn_g_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK-NEXT:      %a_normalized = ternary.rms_normalize %a : tensor<?x16xf32>
// CHECK-NEXT:      %in = ternary.scale %a_normalized, %ig_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK-NEXT:      %iq, %iqs = ternary.quant_act %in : tensor<?x16xf32> -> tensor<?x16xi8>, tensor<?x1xf32>
// CHECK-NEXT:      %iacc = ternary.accum %iq, %iw_1 : tensor<?x16xi8>, !ternary.trits<?x16> -> tensor<?x?xi32>
// CHECK-NEXT:      %i_1 = ternary.dequant %iacc, %iqs, %is_1 : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
// CHECK-NEXT:      %fn = ternary.scale %a_normalized, %fg_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK-NEXT:      %fq, %fqs = ternary.quant_act %fn
// CHECK-NEXT:      %facc = ternary.accum %fq, %fw_1
// CHECK-NEXT:      %f_1 = ternary.dequant
// CHECK-NEXT:      %gn = ternary.scale %a_normalized, %gg_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK-NEXT:      %gq, %gqs = ternary.quant_act %gn
// CHECK-NEXT:      %gacc = ternary.accum %gq, %gw_1
// CHECK-NEXT:      %g_1 = ternary.dequant
// CHECK-NEXT:      ternary.yield %i_1, %f_1, %g_1 : tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %i, %f, %g
// A batch split adds grid axis 1 over the rows.
// BATCH:         %i, %f, %g = ternary.kernel grid [4, 2] (%x_1 = %x : tensor<?x16xf32> tiled [1, *], {{.*}} %iw_1 = %iw : !ternary.trits<16x16> tiled [0, *], {{.*}}) -> (tensor<?x16xf32> tiled [1, 0], tensor<?x16xf32> tiled [1, 0], tensor<?x16xf32> tiled [1, 0])

// -----
// Norms with different eps have different statistics: one kernel, but both rmsnorms stay.
func.func @two_eps(%a: tensor<?x8xf32>, %g1: tensor<8xf32>, %g2: tensor<8xf32>, %w1: !ternary.trits<4x8>, %w2: !ternary.trits<4x8>, %s: f32) -> (tensor<?x4xf32>, tensor<?x4xf32>) {
  %n1 = ternary.rmsnorm %a, %g1 : tensor<?x8xf32>, tensor<8xf32>
  %q1, %qs1 = ternary.quant_act %n1 : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc1 = ternary.accum %q1, %w1 : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %y1 = ternary.dequant %acc1, %qs1, %s : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  %n2 = ternary.rmsnorm %a, %g2 eps 1.000000e-05 : tensor<?x8xf32>, tensor<8xf32>
  %q2, %qs2 = ternary.quant_act %n2 : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc2 = ternary.accum %q2, %w2 : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %y2 = ternary.dequant %acc2, %qs2, %s : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  func.return %y1, %y2 : tensor<?x4xf32>, tensor<?x4xf32>
}

// CHECK-LABEL: func.func @two_eps
// CHECK:         %y1, %y2 = ternary.kernel grid [8]
// CHECK-NOT:       ternary.rms_normalize
// CHECK-NOT:       ternary.scale
// CHECK:           %n1 = ternary.rmsnorm %a_1, %g1_1 : tensor<?x8xf32>, tensor<8xf32>
// CHECK-NOT:       ternary.rms_normalize
// CHECK-NOT:       ternary.scale
// CHECK:           %n2 = ternary.rmsnorm %a_1, %g2_1 eps 1.000000e-05 : tensor<?x8xf32>, tensor<8xf32>
// CHECK-NOT:       ternary.rms_normalize
// CHECK-NOT:       ternary.scale
// CHECK:           ternary.yield %y1_1, %y2_1

// -----
// Float masters: quant_weight is offline work and stays outside; its trits and scale are operands.
func.func @float_master(%x: tensor<?x?x12xf32>) -> tensor<?x?x20xf32> {
  %gamma = ternary.weight @p.norm.weight : tensor<12xf32>
  %m = ternary.weight @p.weight : tensor<20x12xbf16>
  %t, %s = ternary.quant_weight %m : tensor<20x12xbf16> -> !ternary.trits<20x12>, f32
  %n = ternary.rmsnorm %x, %gamma : tensor<?x?x12xf32>, tensor<12xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x?x12xf32> -> tensor<?x?x12xi8>, tensor<?x?x1xf32>
  %acc = ternary.accum %q, %t : tensor<?x?x12xi8>, !ternary.trits<20x12> -> tensor<?x?x20xi32>
  %y = ternary.dequant %acc, %qs, %s : tensor<?x?x20xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x20xf32>
  func.return %y : tensor<?x?x20xf32>
}

// CHECK-LABEL: func.func @float_master
// CHECK:         %t, %s = ternary.quant_weight %m : tensor<20x12xbf16> -> !ternary.trits<20x12>, f32
// CHECK-NEXT:    %y = ternary.kernel grid [8] (%x_1 = %x : tensor<?x?x12xf32>, %gamma_1 = %gamma : tensor<12xf32>, %t_1 = %t : !ternary.trits<20x12> tiled [0, *], %s_1 = %s : f32) -> (tensor<?x?x20xf32> tiled [*, *, 0]) attributes {label = "p"} {
// CHECK-NEXT:      %n = ternary.rmsnorm %x_1, %gamma_1 : tensor<?x?x12xf32>, tensor<12xf32>
// CHECK-NEXT:      %q, %qs = ternary.quant_act %n : tensor<?x?x12xf32> -> tensor<?x?x12xi8>, tensor<?x?x1xf32>
// CHECK-NEXT:      %acc = ternary.accum %q, %t_1 : tensor<?x?x12xi8>, !ternary.trits<?x12> -> tensor<?x?x?xi32>
// CHECK-NEXT:      %y_1 = ternary.dequant %acc, %qs, %s_1 : tensor<?x?x?xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x?xf32>
// CHECK-NEXT:      ternary.yield %y_1 : tensor<?x?x?xf32>
// CHECK-NOT:     ternary.quant_weight
// BATCH:         %y = ternary.kernel grid [4, 2] (%x_1 = %x : tensor<?x?x12xf32> tiled [1, *, *], {{.*}}) -> (tensor<?x?x20xf32> tiled [1, *, 0])

// -----
// Packed weights: read by accum directly, or through an unpack that moves into the kernel.
func.func @packed(%x: tensor<?x8xf32>) -> tensor<?x6xf32> {
  %gamma = ternary.weight @p.norm.weight : tensor<8xf32>
  %p = ternary.weight @p.weight : !ternary.packed<6x8, "2bit">
  %s = ternary.weight @p.weight_scale : f32
  %n = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %p : tensor<?x8xi8>, !ternary.packed<6x8, "2bit"> -> tensor<?x6xi32>
  %y = ternary.dequant %acc, %qs, %s : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
  func.return %y : tensor<?x6xf32>
}
func.func @unpacked(%x: tensor<?x8xf32>) -> tensor<?x6xf32> {
  %gamma = ternary.weight @r.norm.weight : tensor<8xf32>
  %p = ternary.weight @r.weight : !ternary.packed<6x8, "base3">
  %s = ternary.weight @r.weight_scale : f32
  %t = ternary.unpack %p : !ternary.packed<6x8, "base3"> -> !ternary.trits<6x8>
  %n = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %t : tensor<?x8xi8>, !ternary.trits<6x8> -> tensor<?x6xi32>
  %y = ternary.dequant %acc, %qs, %s : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
  func.return %y : tensor<?x6xf32>
}

// CHECK-LABEL: func.func @packed
// CHECK:         %y = ternary.kernel grid [8] (%x_1 = %x : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %p_1 = %p : !ternary.packed<6x8, "2bit"> tiled [0, *], %s_1 = %s : f32) -> (tensor<?x6xf32> tiled [*, 0]) attributes {label = "p"} {
// CHECK:           %acc = ternary.accum %q, %p_1 : tensor<?x8xi8>, !ternary.packed<?x8, "2bit"> -> tensor<?x?xi32>
// CHECK-LABEL: func.func @unpacked
// CHECK:         %y = ternary.kernel grid [8] (%p_1 = %p : !ternary.packed<6x8, "base3"> tiled [0, *], %x_1 = %x : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %s_1 = %s : f32) -> (tensor<?x6xf32> tiled [*, 0]) attributes {label = "r"} {
// CHECK-NEXT:      %t = ternary.unpack %p_1 : !ternary.packed<?x8, "base3"> -> !ternary.trits<?x8>
// CHECK:           %acc = ternary.accum %q, %t : tensor<?x8xi8>, !ternary.trits<?x8> -> tensor<?x?xi32>

// -----
// The MLP norm: a residual_rmsnorm whose sum the block's final add needs later. The norm moves into
// the gate projection's kernel; the final add reads a re-computed x + residual (one f32 add, as exact).
func.func @residual(%o: tensor<?x16xf32>, %x: tensor<?x16xf32>, %down: tensor<?x16xf32>) -> (tensor<?x48xf32>, tensor<?x16xf32>) {
  %mg = ternary.weight @l0.mlp_norm.weight : tensor<16xf32>
  %m, %sum = ternary.residual_rmsnorm %o, %x, %mg : tensor<?x16xf32>, tensor<16xf32>
  %gamma = ternary.weight @l0.gate_proj.norm.weight : tensor<16xf32>
  %w = ternary.weight @l0.gate_proj.weight : !ternary.trits<48x16>
  %s = ternary.weight @l0.gate_proj.weight_scale : f32
  %n = ternary.rmsnorm %m, %gamma : tensor<?x16xf32>, tensor<16xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x16xf32> -> tensor<?x16xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x16xi8>, !ternary.trits<48x16> -> tensor<?x48xi32>
  %gu = ternary.dequant %acc, %qs, %s : tensor<?x48xi32>, tensor<?x1xf32>, f32 -> tensor<?x48xf32>
  %next = ternary.add %sum, %down : tensor<?x16xf32>
  func.return %gu, %next : tensor<?x48xf32>, tensor<?x16xf32>
}

// CHECK-LABEL: func.func @residual
// CHECK:         %sum = ternary.add %o, %x : tensor<?x16xf32>
// CHECK:         %gu = ternary.kernel grid [8] (%o_1 = %o : tensor<?x16xf32>, %x_1 = %x : tensor<?x16xf32>, %mg_1 = %mg : tensor<16xf32>, %gamma_1 = %gamma : tensor<16xf32>, %w_1 = %w : !ternary.trits<48x16> tiled [0, *], %s_1 = %s : f32) -> (tensor<?x48xf32> tiled [*, 0]) attributes {label = "l0.gate_proj"} {
// CHECK-NEXT:      %m, %sum_1 = ternary.residual_rmsnorm %o_1, %x_1, %mg_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK-NEXT:      %n = ternary.rmsnorm %m, %gamma_1 : tensor<?x16xf32>, tensor<16xf32>
// CHECK:           ternary.yield %gu_1 : tensor<?x?xf32>
// CHECK:         %next = ternary.add %sum, %down : tensor<?x16xf32>
// Without recompute-residual the norm stays outside.
// NORECOMPUTE-LABEL: func.func @residual
// NORECOMPUTE:       %m, %sum = ternary.residual_rmsnorm %o, %x, %mg : tensor<?x16xf32>, tensor<16xf32>
// NORECOMPUTE:       %gu = ternary.kernel grid [256] (%m_1 = %m : tensor<?x16xf32>,
// NORECOMPUTE:       %next = ternary.add %sum, %down : tensor<?x16xf32>

// -----
// Left alone: a chain whose quantized activation is used elsewhere; the norm that also feeds another
// op (the BitLinear is fused, the norm stays outside); ops of other dialects between.
func.func @leave_alone(%x: tensor<?x8xf32>, %w: !ternary.trits<4x8>, %s: f32, %gamma: tensor<8xf32>) -> (tensor<?x4xf32>, tensor<?x8xi8>, tensor<?x4xf32>, tensor<?x8xf32>) {
  %n = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %y = ternary.dequant %acc, %qs, %s : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  %a = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %c = arith.constant 1.0 : f32
  %n2 = ternary.rmsnorm %a, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %q2, %qs2 = ternary.quant_act %n2 : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc2 = ternary.accum %q2, %w : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %y2 = ternary.dequant %acc2, %qs2, %c : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  func.return %y, %q, %y2, %a : tensor<?x4xf32>, tensor<?x8xi8>, tensor<?x4xf32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @leave_alone
// CHECK-NEXT:    %n = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
// CHECK-NEXT:    %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
// CHECK-NEXT:    %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
// CHECK-NEXT:    %y = ternary.dequant %acc, %qs, %s : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
// CHECK-NEXT:    %a = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
// CHECK-NEXT:    %c = arith.constant 1.000000e+00 : f32
// CHECK-NEXT:    %y2 = ternary.kernel grid [8] (%a_1 = %a : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %w_1 = %w : !ternary.trits<4x8> tiled [0, *], %c_1 = %c : f32) -> (tensor<?x4xf32> tiled [*, 0]) {
// CHECK-NEXT:      %n2 = ternary.rmsnorm %a_1, %gamma_1 : tensor<?x8xf32>, tensor<8xf32>

// -----
// A BitLinear whose input rows an earlier kernel produces split over programs: it gets a kernel of
// its own reading the whole rows; the producer kernel is left as it is.
func.func @split_input(%h: tensor<?x8xf32>, %h0: tensor<?x8xf32>, %w: !ternary.trits<4x8>, %s: f32, %gamma: tensor<8xf32>) -> tensor<?x4xf32> {
  %x = ternary.kernel grid [3] (%a = %h : tensor<?x8xf32> tiled [*, 0], %b = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
    %r = ternary.add %a, %b : tensor<?x?xf32>
    ternary.yield %r : tensor<?x?xf32>
  }
  %n = ternary.rmsnorm %x, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %y = ternary.dequant %acc, %qs, %s : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  func.return %y : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @split_input
// CHECK-NEXT:    %x = ternary.kernel grid [3] (%a = %h : tensor<?x8xf32> tiled [*, 0], %b = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
// CHECK-NEXT:      %r = ternary.add %a, %b : tensor<?x?xf32>
// CHECK-NEXT:      ternary.yield %r : tensor<?x?xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %y = ternary.kernel grid [8] (%x_1 = %x : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %w_1 = %w : !ternary.trits<4x8> tiled [0, *], %s_1 = %s : f32) -> (tensor<?x4xf32> tiled [*, 0]) {
// CHECK-NEXT:      %n = ternary.rmsnorm %x_1, %gamma_1 : tensor<?x8xf32>, tensor<8xf32>

