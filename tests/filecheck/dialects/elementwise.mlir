// Elementwise ops and gates of the MLGRU and GLU: printed form, and custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip
// RUN: xdsl-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @gates(%a: tensor<?x?x64xf32>, %b: tensor<?x?x64xf32>, %lb: tensor<64xf32>,
                 %gamma: tensor<64xf32>, %mask: tensor<?x?xi64>, %h: tensor<?x64xf32>) {
  %sig = ternary.sigmoid %a : tensor<?x?x64xf32>
  %silu = ternary.silu %a : tensor<?x?x64xf32>
  %om = ternary.one_minus %a : tensor<?x?x64xf32>
  %sm = ternary.silu_mul %a, %b : tensor<?x?x64xf32>
  %mul = ternary.mul %a, %b : tensor<?x?x64xf32>
  %add = ternary.add %a, %b : tensor<?x?x64xf32>
  %sub = ternary.sub %a, %b : tensor<?x?x64xf32>
  %f = ternary.lower_bound %sig, %lb : tensor<?x?x64xf32>, tensor<64xf32>
  %o = ternary.gate_norm %a, %b, %gamma : tensor<?x?x64xf32>, tensor<64xf32>
  %o5 = ternary.gate_norm %a, %b, %gamma eps 1.000000e-05 : tensor<?x?x64xf32>, tensor<64xf32>
  %m = ternary.mask %a, %mask : tensor<?x?x64xf32>, tensor<?x?xi64>
  %h1 = ternary.scan_step %h, %h, %h : tensor<?x64xf32>
  %vec = ternary.silu %lb : tensor<64xf32>
  func.return
}

// CHECK:      %sig = ternary.sigmoid %a : tensor<?x?x64xf32>
// CHECK-NEXT: %silu = ternary.silu %a : tensor<?x?x64xf32>
// CHECK-NEXT: %om = ternary.one_minus %a : tensor<?x?x64xf32>
// CHECK-NEXT: %sm = ternary.silu_mul %a, %b : tensor<?x?x64xf32>
// CHECK-NEXT: %mul = ternary.mul %a, %b : tensor<?x?x64xf32>
// CHECK-NEXT: %add = ternary.add %a, %b : tensor<?x?x64xf32>
// CHECK-NEXT: %sub = ternary.sub %a, %b : tensor<?x?x64xf32>
// CHECK-NEXT: %f = ternary.lower_bound %sig, %lb : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: %o = ternary.gate_norm %a, %b, %gamma : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: %o5 = ternary.gate_norm %a, %b, %gamma eps 1.000000e-05 : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: %m = ternary.mask %a, %mask : tensor<?x?x64xf32>, tensor<?x?xi64>
// CHECK-NEXT: %h1 = ternary.scan_step %h, %h, %h : tensor<?x64xf32>
// CHECK-NEXT: %vec = ternary.silu %lb : tensor<64xf32>

// GENERIC:      %sig = "ternary.sigmoid"(%a) : (tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
// GENERIC:      %sm = "ternary.silu_mul"(%a, %b) : (tensor<?x?x64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
// GENERIC:      %f = "ternary.lower_bound"(%sig, %lb) : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
// GENERIC:      %o5 = "ternary.gate_norm"(%a, %b, %gamma) <{eps = 1.000000e-05 : f32}>
// GENERIC:      %m = "ternary.mask"(%a, %mask) : (tensor<?x?x64xf32>, tensor<?x?xi64>) -> tensor<?x?x64xf32>
// GENERIC:      %h1 = "ternary.scan_step"(%h, %h, %h) : (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
