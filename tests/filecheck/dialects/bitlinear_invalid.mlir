// Verifier messages of the BitLinear steps.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @f(%x: tensor<?x64xf32>, %g: tensor<32xf32>) {
  %y = ternary.rmsnorm %x, %g : tensor<?x64xf32>, tensor<32xf32>
  func.return
}
// CHECK: rmsnorm: gamma has shape [32], expected [64] (the last dim of x)

// -----

func.func @f(%x: tensor<?x64xf16>, %g: tensor<64xf32>) {
  %y = ternary.rmsnorm %x, %g : tensor<?x64xf16>, tensor<64xf32>
  func.return
}
// CHECK: rmsnorm: x must be a tensor of f32, got tensor<?x64xf16>

// -----

func.func @f(%x: tensor<?x64xf32>, %g: tensor<64xf32>) {
  %y = ternary.rmsnorm %x, %g eps -1.000000e-06 : tensor<?x64xf32>, tensor<64xf32>
  func.return
}
// CHECK: rmsnorm: eps must be >= 0

// -----

func.func @f(%x: tensor<?x64xf16>) {
  %y = ternary.rms_normalize %x : tensor<?x64xf16>
  func.return
}
// CHECK: rms_normalize: x must be a tensor of f32, got tensor<?x64xf16>

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.rms_normalize %x eps -1.000000e-06 : tensor<?x64xf32>
  func.return
}
// CHECK: rms_normalize: eps must be >= 0

// -----

func.func @f(%x: tensor<?x64xf32>, %g: tensor<32xf32>) {
  %y = ternary.scale %x, %g : tensor<?x64xf32>, tensor<32xf32>
  func.return
}
// CHECK: scale: gamma has shape [32], expected [64] (the last dim of x)

// -----

func.func @f(%x: tensor<?x64xi32>, %g: tensor<64xf32>) {
  %y = ternary.scale %x, %g : tensor<?x64xi32>, tensor<64xf32>
  func.return
}
// CHECK: scale: x must be a tensor of f32, got tensor<?x64xi32>

// -----

func.func @f(%x: tensor<?x64xf32>, %g: tensor<64xi8>) {
  %y = ternary.scale %x, %g : tensor<?x64xf32>, tensor<64xi8>
  func.return
}
// CHECK: scale: gamma must be a tensor of

// -----

func.func @f(%x: tensor<?x64xf32>, %g: tensor<64x1xf32>) {
  %y, %s = ternary.residual_rmsnorm %x, %x, %g : tensor<?x64xf32>, tensor<64x1xf32>
  func.return
}
// CHECK: residual_rmsnorm: gamma has shape [64, 1], expected [64] (the last dim of x)

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %q, %s = ternary.quant_act %x : tensor<?x64xf32> -> tensor<?x64xi32>, tensor<?x1xf32>
  func.return
}
// CHECK: quant_act: q must be a tensor of i8, got tensor<?x64xi32>

// -----

func.func @f(%x: tensor<4x64xf32>) {
  %q, %s = ternary.quant_act %x : tensor<4x64xf32> -> tensor<4x64xi8>, tensor<4x64xf32>
  func.return
}
// CHECK: quant_act: scale has shape [4, 64], expected [4, 1] (one scale per row, last dim 1)

// -----

func.func @f(%x: tensor<4x64xf32>) {
  %q, %s = ternary.quant_act %x : tensor<4x64xf32> -> tensor<4x64xi8>, tensor<3x1xf32>
  func.return
}
// CHECK: quant_act: scale has shape [3, 1], expected [4, 1] (one scale per row of x)

// -----

func.func @f(%x: tensor<4x64xf32>) {
  %q, %s = ternary.quant_act %x : tensor<4x64xf32> -> tensor<4x64xi8>, tensor<4x1xf16>
  func.return
}
// CHECK: quant_act: scale must be a tensor of f32, got tensor<4x1xf16>

// -----

func.func @f(%x: tensor<?x64xi8>, %t: !ternary.trits<32x32>) {
  %acc = ternary.accum %x, %t : tensor<?x64xi8>, !ternary.trits<32x32> -> tensor<?x32xi32>
  func.return
}
// CHECK: accum: activation K=64 does not match weight K=32

// -----

func.func @f(%x: tensor<?x64xi8>, %t: !ternary.packed<32x64, "2bit">) {
  %acc = ternary.accum %x, %t : tensor<?x64xi8>, !ternary.packed<32x64, "2bit"> -> tensor<?x16xi32>
  func.return
}
// CHECK: accum: result has shape [?, 16], expected [?, 32] ([..., N]: the activation's rows, the weight's N)

// -----

func.func @f(%x: tensor<?x64xf32>, %t: !ternary.trits<32x64>) {
  %acc = ternary.accum %x, %t : tensor<?x64xf32>, !ternary.trits<32x64> -> tensor<?x32xi32>
  func.return
}
// CHECK: accum: activation must be a tensor of i8, got tensor<?x64xf32>

// -----

func.func @f(%x: tensor<?x64xi8>, %t: tensor<32x64xi8>) {
  %acc = ternary.accum %x, %t : tensor<?x64xi8>, tensor<32x64xi8> -> tensor<?x32xi32>
  func.return
}
// CHECK: accum: weight must be !ternary.trits or !ternary.packed, got tensor<32x64xi8>

// -----

func.func @f(%x: tensor<?x64xi8>, %t: !ternary.trits<32x64>) {
  %acc = ternary.accum %x, %t : tensor<?x64xi8>, !ternary.trits<32x64> -> tensor<?x32xi64>
  func.return
}
// CHECK: accum: result must be a tensor of i32, got tensor<?x32xi64>

// -----

// The generic form is verified after parsing: xDSL names the result first, then the op's own line.
func.func @f(%x: tensor<?x64xi8>, %t: !ternary.trits<32x64>) {
  %acc = "ternary.accum"(%x, %t) : (tensor<?x64xi8>, !ternary.trits<32x64>) -> tensor<?x32xf32>
  func.return
}
// CHECK: result 'acc' at position 0 does not verify:
// CHECK-NEXT: accum: result must be a tensor of i32, got tensor<?x32xf32>

// -----

func.func @f(%acc: tensor<?x32xi32>, %s: tensor<?x1xf32>, %ws: tensor<1xf32>) {
  %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x1xf32>, tensor<1xf32> -> tensor<?x32xf32>
  func.return
}
// CHECK: dequant: weight scale must be an f32 scale (f32 or tensor<f32>), got tensor<1xf32>

// -----

func.func @f(%acc: tensor<?x32xi32>, %s: tensor<?x32xf32>, %ws: f32) {
  %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x32xf32>, f32 -> tensor<?x32xf32>
  func.return
}
// CHECK: dequant: activation scale has shape [?, 32], expected [?, 1] (one scale per row, last dim 1)

// -----

func.func @f(%acc: tensor<?x32xi32>, %s: tensor<?x1xf32>, %ws: f32) {
  %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x1xf32>, f32 -> tensor<?x16xf32>
  func.return
}
// CHECK: dequant: result has shape [?, 16], expected [?, 32] (the accumulator's shape)

// -----

func.func @f(%acc: tensor<?x32xi32>, %s: tensor<?x1xf32>, %ws: f32) {
  %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x1xf32>, f32 -> tensor<?x32xbf16>
  func.return
}
// CHECK: dequant: result must be a tensor of f32, got tensor<?x32xbf16>

// -----

func.func @f(%acc: tensor<?x32xi64>, %s: tensor<?x1xf32>, %ws: f32) {
  %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi64>, tensor<?x1xf32>, f32 -> tensor<?x32xf32>
  func.return
}
// CHECK: dequant: accumulator must be a tensor of i32, got tensor<?x32xi64>
