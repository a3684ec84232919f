// The BitLinear steps (rmsnorm, rms_normalize + scale, residual_rmsnorm, quant_act, accum, dequant) with dynamic batch and
// sequence dims: printed form, and custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip
// RUN: xdsl-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @bitlinear(%x: tensor<?x?x64xf32>, %res: tensor<?x?x64xf32>, %gamma: tensor<64xbf16>,
                     %w: !ternary.trits<32x64>, %p: !ternary.packed<32x64, "base3">, %ws: f32) -> tensor<?x?x32xf32> {
  %n = ternary.rmsnorm %x, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
  %n8 = ternary.rmsnorm %x, %gamma eps 1.000000e-08 : tensor<?x?x64xf32>, tensor<64xbf16>
  %xn = ternary.rms_normalize %x : tensor<?x?x64xf32>
  %xn5 = ternary.rms_normalize %x eps 1.000000e-05 : tensor<?x?x64xf32>
  %xg = ternary.scale %xn, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
  %normed, %sum = ternary.residual_rmsnorm %x, %res, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
  %q, %s = ternary.quant_act %n : tensor<?x?x64xf32> -> tensor<?x?x64xi8>, tensor<?x?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x?x64xi8>, !ternary.trits<32x64> -> tensor<?x?x32xi32>
  %acc3 = ternary.accum %q, %p : tensor<?x?x64xi8>, !ternary.packed<32x64, "base3"> -> tensor<?x?x32xi32>
  %y = ternary.dequant %acc, %s, %ws : tensor<?x?x32xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x32xf32>
  func.return %y : tensor<?x?x32xf32>
}

// CHECK:      %n = ternary.rmsnorm %x, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
// CHECK-NEXT: %n8 = ternary.rmsnorm %x, %gamma eps 1.000000e-08 : tensor<?x?x64xf32>, tensor<64xbf16>
// CHECK-NEXT: %xn = ternary.rms_normalize %x : tensor<?x?x64xf32>
// CHECK-NEXT: %xn5 = ternary.rms_normalize %x eps 1.000000e-05 : tensor<?x?x64xf32>
// CHECK-NEXT: %xg = ternary.scale %xn, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
// CHECK-NEXT: %normed, %sum = ternary.residual_rmsnorm %x, %res, %gamma : tensor<?x?x64xf32>, tensor<64xbf16>
// CHECK-NEXT: %q, %s = ternary.quant_act %n : tensor<?x?x64xf32> -> tensor<?x?x64xi8>, tensor<?x?x1xf32>
// CHECK-NEXT: %acc = ternary.accum %q, %w : tensor<?x?x64xi8>, !ternary.trits<32x64> -> tensor<?x?x32xi32>
// CHECK-NEXT: %acc3 = ternary.accum %q, %p : tensor<?x?x64xi8>, !ternary.packed<32x64, "base3"> -> tensor<?x?x32xi32>
// CHECK-NEXT: %y = ternary.dequant %acc, %s, %ws : tensor<?x?x32xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x32xf32>

// The default eps (1e-6) is elided in the custom form but stored as a property.
// GENERIC:      %n = "ternary.rmsnorm"(%x, %gamma) <{eps = 1.000000e-06 : f32}> : (tensor<?x?x64xf32>, tensor<64xbf16>) -> tensor<?x?x64xf32>
// GENERIC-NEXT: %n8 = "ternary.rmsnorm"(%x, %gamma) <{eps = 1.000000e-08 : f32}>
// GENERIC-NEXT: %xn = "ternary.rms_normalize"(%x) <{eps = 1.000000e-06 : f32}> : (tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
// GENERIC-NEXT: %xn5 = "ternary.rms_normalize"(%x) <{eps = 1.000000e-05 : f32}>
// GENERIC-NEXT: %xg = "ternary.scale"(%xn, %gamma) : (tensor<?x?x64xf32>, tensor<64xbf16>) -> tensor<?x?x64xf32>
// GENERIC-NEXT: %normed, %sum = "ternary.residual_rmsnorm"(%x, %res, %gamma) <{eps = 1.000000e-06 : f32}> : (tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<64xbf16>) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>)
// GENERIC-NEXT: %q, %s = "ternary.quant_act"(%n) : (tensor<?x?x64xf32>) -> (tensor<?x?x64xi8>, tensor<?x?x1xf32>)
