// Verifier messages of the recurrence, embedding, lower bounds and slicing ops.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @f(%x: tensor<?x64xf32>) {
  %h, %hl = ternary.scan %x, %x : tensor<?x64xf32>, tensor<?x64xf32>
  func.return
}
// CHECK: scan: x must have at least 3 dims, got tensor<?x64xf32>

// -----

func.func @f(%x: tensor<2x?x64xf32>) {
  %h, %hl = ternary.scan %x, %x : tensor<2x?x64xf32>, tensor<3x64xf32>
  func.return
}
// CHECK: scan: state has shape [3, 64], expected [2, 64] ([B, d] of x)

// -----

// The initial state has the type of the final state.
func.func @f(%x: tensor<2x?x64xf32>, %h0: tensor<2x32xf32>) {
  %h, %hl = "ternary.scan"(%x, %x, %h0) : (tensor<2x?x64xf32>, tensor<2x?x64xf32>, tensor<2x32xf32>) -> (tensor<2x?x64xf32>, tensor<2x64xf32>)
  func.return
}
// CHECK: attribute tensor<2x32xf32> expected from variable 'S', but got tensor<2x64xf32>

// -----

func.func @f(%t: tensor<100x64xf32>, %ids: tensor<?xi16>) {
  %e = ternary.embedding %t[%ids] : tensor<100x64xf32>, tensor<?xi16> -> tensor<?x64xf32>
  func.return
}
// CHECK: embedding: ids must be a tensor of i32 or i64, got tensor<?xi16>

// -----

func.func @f(%t: tensor<100x64xf32>, %ids: tensor<?xi64>) {
  %e = ternary.embedding %t[%ids] : tensor<100x64xf32>, tensor<?xi64> -> tensor<?x32xf32>
  func.return
}
// CHECK: embedding: result has shape [?, 32], expected [?, 64] (the ids' shape, then d)

// -----

func.func @f(%t: tensor<100x64xbf16>, %ids: tensor<?xi64>) {
  %e = ternary.embedding %t[%ids] : tensor<100x64xbf16>, tensor<?xi64> -> tensor<?x64xbf16>
  func.return
}
// CHECK: embedding: result must be a tensor of f32, got tensor<?x64xbf16>

// -----

func.func @f(%t: tensor<100x64xi8>, %ids: tensor<?xi64>) {
  %e = ternary.embedding %t[%ids] : tensor<100x64xi8>, tensor<?xi64> -> tensor<?x64xf32>
  func.return
}
// CHECK: embedding: table must be a tensor of a float (bf16, f16, f32, f64), got tensor<100x64xi8>

// -----

func.func @f(%p: tensor<4x64xf32>) {
  %l = ternary.lower_bounds %p : tensor<4x64xf32> -> tensor<64x4xf32>
  func.return
}
// CHECK: lower_bounds: result has shape [64, 4], expected [4, 64] (the param's shape)

// -----

func.func @f(%p: tensor<4x64xf32>) {
  %l = ternary.row %p[4] : tensor<4x64xf32> -> tensor<64xf32>
  func.return
}
// CHECK: row: index 4 is out of range for 4 rows

// -----

func.func @f(%p: tensor<4x64xf32>) {
  %l = ternary.row %p[1] : tensor<4x64xf32> -> tensor<32xf32>
  func.return
}
// CHECK: row: result has shape [32], expected [64] (the input without its first dim)

// -----

func.func @f(%p: tensor<4x64xf32>) {
  %l = ternary.row %p[1] : tensor<4x64xf32> -> tensor<64xbf16>
  func.return
}
// CHECK: row: result must be a tensor of the input's element type, got tensor<64xbf16>

// -----

func.func @f(%x: tensor<?x255xf32>) {
  %a, %b = ternary.split %x : tensor<?x255xf32> -> tensor<?x127xf32>, tensor<?x127xf32>
  func.return
}
// CHECK: split: last dim 255 does not split into 2 equal parts

// -----

func.func @f(%x: tensor<?x256xf32>) {
  %a, %b = ternary.split %x : tensor<?x256xf32> -> tensor<?x128xf32>, tensor<?x64xf32>
  func.return
}
// CHECK: split: all parts must have one tensor type with the input's element type, got tensor<?x64xf32>

// -----

func.func @f(%x: tensor<?x256xf32>) {
  %a, %b = ternary.split %x : tensor<?x256xf32> -> tensor<?x128xbf16>, tensor<?x128xbf16>
  func.return
}
// CHECK: split: all parts must have one tensor type with the input's element type, got tensor<?x128xbf16>

// -----

func.func @f(%x: tensor<?x256xf32>) {
  %a, %b = ternary.split %x : tensor<?x256xf32> -> tensor<?x64xf32>, tensor<?x64xf32>
  func.return
}
// CHECK: split: part 0 has shape [?, 64], expected [?, 128] (1/2 of the input's last dim)

// -----

func.func @f(%x: tensor<?x256xf32>) {
  %a = ternary.split %x : tensor<?x256xf32> -> tensor<?x256xf32>
  func.return
}
// CHECK: split: expected at least 2 parts, got 1
