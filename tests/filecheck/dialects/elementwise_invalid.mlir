// Verifier messages of the elementwise ops and gates.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @f(%a: tensor<?x64xi32>) {
  %y = ternary.sigmoid %a : tensor<?x64xi32>
  func.return
}
// CHECK: sigmoid: operand must be a tensor of f32, got tensor<?x64xi32>

// -----

func.func @f(%a: tensor<?x64xbf16>) {
  %y = ternary.add %a, %a : tensor<?x64xbf16>
  func.return
}
// CHECK: add: operand must be a tensor of f32, got tensor<?x64xbf16>

// -----

// Operands of one elementwise op share one type (generic form, to spell two types).
func.func @f(%a: tensor<?x64xf32>, %b: tensor<?x32xf32>) {
  %y = "ternary.mul"(%a, %b) : (tensor<?x64xf32>, tensor<?x32xf32>) -> tensor<?x64xf32>
  func.return
}
// CHECK: attribute tensor<?x64xf32> expected from variable 'T', but got tensor<?x32xf32>

// -----

func.func @f(%a: tensor<?x64xf32>, %lb: tensor<32xf32>) {
  %y = ternary.lower_bound %a, %lb : tensor<?x64xf32>, tensor<32xf32>
  func.return
}
// CHECK: lower_bound: lower bound has shape [32], expected [64] (the last dim of x)

// -----

func.func @f(%a: tensor<?x64xf32>, %g: tensor<32xf32>) {
  %y = ternary.gate_norm %a, %a, %g : tensor<?x64xf32>, tensor<32xf32>
  func.return
}
// CHECK: gate_norm: gamma has shape [32], expected [64] (the last dim of g)

// -----

func.func @f(%a: tensor<2x5x64xf32>, %m: tensor<2x4xi64>) {
  %y = ternary.mask %a, %m : tensor<2x5x64xf32>, tensor<2x4xi64>
  func.return
}
// CHECK: mask: mask has shape [2, 4], expected [2, 5] (the shape of x without its last dim)

// -----

func.func @f(%a: tensor<2x5x64xf32>, %m: tensor<2x5xf16>) {
  %y = ternary.mask %a, %m : tensor<2x5x64xf32>, tensor<2x5xf16>
  func.return
}
// CHECK: mask: mask must be a tensor of an integer type or f32, got tensor<2x5xf16>

// -----

func.func @f(%h: tensor<?x64xf16>) {
  %y = ternary.scan_step %h, %h, %h : tensor<?x64xf16>
  func.return
}
// CHECK: scan_step: operand must be a tensor of f32, got tensor<?x64xf16>
