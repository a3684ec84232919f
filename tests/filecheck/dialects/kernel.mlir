// Fused kernels: printed form, and custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip
// RUN: xdsl-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

// Prefill BitLinear: programs own blocks of 16 tokens ([B, T] split by grid axes 0 and 1), whole rows.
func.func @bitlinear(%x: tensor<?x?x64xf32>, %gamma: tensor<64xf32>, %w: !ternary.trits<32x64>, %ws: f32) -> tensor<?x?x32xf32> {
  %y = ternary.kernel grid [1, 16] (%a = %x : tensor<?x?x64xf32> tiled [0, 1, *], %g = %gamma : tensor<64xf32>, %t = %w : !ternary.trits<32x64>, %s = %ws : f32) -> (tensor<?x?x32xf32> tiled [0, 1, *]) {
    %n = ternary.rmsnorm %a, %g : tensor<?x?x64xf32>, tensor<64xf32>
    %q, %qs = ternary.quant_act %n : tensor<?x?x64xf32> -> tensor<?x?x64xi8>, tensor<?x?x1xf32>
    %acc = ternary.accum %q, %t : tensor<?x?x64xi8>, !ternary.trits<32x64> -> tensor<?x?x32xi32>
    %r = ternary.dequant %acc, %qs, %s : tensor<?x?x32xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x32xf32>
    ternary.yield %r : tensor<?x?x32xf32>
  }
  func.return %y : tensor<?x?x32xf32>
}
// CHECK-LABEL: func.func @bitlinear
// CHECK:        %y = ternary.kernel grid [1, 16] (%a = %x : tensor<?x?x64xf32> tiled [0, 1, *], %g = %gamma : tensor<64xf32>, %t = %w : !ternary.trits<32x64>, %s = %ws : f32) -> (tensor<?x?x32xf32> tiled [0, 1, *]) {
// CHECK-NEXT:     %n = ternary.rmsnorm %a, %g : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT:     %q, %qs = ternary.quant_act %n : tensor<?x?x64xf32> -> tensor<?x?x64xi8>, tensor<?x?x1xf32>
// CHECK-NEXT:     %acc = ternary.accum %q, %t : tensor<?x?x64xi8>, !ternary.trits<32x64> -> tensor<?x?x32xi32>
// CHECK-NEXT:     %r = ternary.dequant %acc, %qs, %s : tensor<?x?x32xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x32xf32>
// CHECK-NEXT:     ternary.yield %r : tensor<?x?x32xf32>
// CHECK-NEXT:   }

// GENERIC-LABEL: sym_name = "bitlinear"
// GENERIC:       %y = "ternary.kernel"(%x, %gamma, %w, %ws) <{grid = array<i64: 1, 16>, input_tiles = [#ternary.tile<[0, 1, *]>, #ternary.tile<[*]>, #ternary.tile<[*, *]>, #ternary.tile<[]>], result_tiles = [#ternary.tile<[0, 1, *]>]}> ({
// GENERIC-NEXT:  ^bb0(%a: tensor<?x?x64xf32>, %g: tensor<64xf32>, %t: !ternary.trits<32x64>, %s: f32):

// Decode GEMV: one token, the packed weight's output rows N split across programs (blocks of 8);
// every program normalizes and quantizes the whole activation row itself.
func.func @gemv(%x: tensor<1x64xf32>, %gamma: tensor<64xf32>, %w: !ternary.packed<32x64, "2bit">, %ws: tensor<f32>) -> tensor<1x32xf32> {
  %y = ternary.kernel grid [8] (%a = %x : tensor<1x64xf32>, %g = %gamma : tensor<64xf32>, %p = %w : !ternary.packed<32x64, "2bit"> tiled [0, *], %s = %ws : tensor<f32>) -> (tensor<1x32xf32> tiled [*, 0]) {
    %n = ternary.rmsnorm %a, %g : tensor<1x64xf32>, tensor<64xf32>
    %q, %qs = ternary.quant_act %n : tensor<1x64xf32> -> tensor<1x64xi8>, tensor<1x1xf32>
    %t = ternary.unpack %p : !ternary.packed<?x64, "2bit"> -> !ternary.trits<?x64>
    %acc = ternary.accum %q, %t : tensor<1x64xi8>, !ternary.trits<?x64> -> tensor<1x?xi32>
    %r = ternary.dequant %acc, %qs, %s : tensor<1x?xi32>, tensor<1x1xf32>, tensor<f32> -> tensor<1x?xf32>
    ternary.yield %r : tensor<1x?xf32>
  }
  func.return %y : tensor<1x32xf32>
}
// CHECK-LABEL: func.func @gemv
// CHECK:        %y = ternary.kernel grid [8] (%a = %x : tensor<1x64xf32>, %g = %gamma : tensor<64xf32>, %p = %w : !ternary.packed<32x64, "2bit"> tiled [0, *], %s = %ws : tensor<f32>) -> (tensor<1x32xf32> tiled [*, 0]) {
// CHECK:          %t = ternary.unpack %p : !ternary.packed<?x64, "2bit"> -> !ternary.trits<?x64>
// CHECK:          ternary.yield %r : tensor<1x?xf32>

// The MLGRU recurrence: batch and channels split (axes 0 and 1), the time axis whole in each program.
func.func @recurrence(%i: tensor<?x?x64xf32>, %ft: tensor<?x?x64xf32>, %lb: tensor<64xf32>, %h0: tensor<?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x64xf32>) {
  %h, %hl = ternary.kernel grid [1, 32] (%xi = %i : tensor<?x?x64xf32> tiled [0, *, 1], %xf = %ft : tensor<?x?x64xf32> tiled [0, *, 1], %l = %lb : tensor<64xf32> tiled [1], %s0 = %h0 : tensor<?x64xf32> tiled [0, 1]) -> (tensor<?x?x64xf32> tiled [0, *, 1], tensor<?x64xf32> tiled [0, 1]) attributes {label = "mlgru"} {
    %sig = ternary.sigmoid %xf : tensor<?x?x?xf32>
    %f = ternary.lower_bound %sig, %l : tensor<?x?x?xf32>, tensor<?xf32>
    %om = ternary.one_minus %f : tensor<?x?x?xf32>
    %ip = ternary.silu_mul %xi, %om : tensor<?x?x?xf32>
    %hs, %last = ternary.scan %ip, %f init %s0 : tensor<?x?x?xf32>, tensor<?x?xf32>
    ternary.yield %hs, %last : tensor<?x?x?xf32>, tensor<?x?xf32>
  }
  func.return %h, %hl : tensor<?x?x64xf32>, tensor<?x64xf32>
}
// CHECK-LABEL: func.func @recurrence
// CHECK:        %h, %hl = ternary.kernel grid [1, 32] (%xi = %i : tensor<?x?x64xf32> tiled [0, *, 1], %xf = %ft : tensor<?x?x64xf32> tiled [0, *, 1], %l = %lb : tensor<64xf32> tiled [1], %s0 = %h0 : tensor<?x64xf32> tiled [0, 1]) -> (tensor<?x?x64xf32> tiled [0, *, 1], tensor<?x64xf32> tiled [0, 1]) attributes {label = "mlgru"} {
// CHECK:          %hs, %last = ternary.scan %ip, %f init %s0 : tensor<?x?x?xf32>, tensor<?x?xf32>
// CHECK-NEXT:     ternary.yield %hs, %last : tensor<?x?x?xf32>, tensor<?x?xf32>

// A single program (empty grid) computing all layers' lower bounds.
func.func @single(%p: tensor<4x64xbf16>) -> tensor<64xf32> {
  %lb = ternary.kernel grid [] (%a = %p : tensor<4x64xbf16>) -> (tensor<64xf32>) {
    %lbs = ternary.lower_bounds %a : tensor<4x64xbf16> -> tensor<4x64xf32>
    %r = ternary.row %lbs[2] : tensor<4x64xf32> -> tensor<64xf32>
    ternary.yield %r : tensor<64xf32>
  }
  func.return %lb : tensor<64xf32>
}
// CHECK-LABEL: func.func @single
// CHECK:        %lb = ternary.kernel grid [] (%a = %p : tensor<4x64xbf16>) -> (tensor<64xf32>) {
