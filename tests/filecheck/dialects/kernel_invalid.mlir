// The kernel verifier: bodies that would need another program's values, and malformed grids/tiles.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

// rmsnorm reduces over the last axis: it may not be split across programs.
func.func @f(%x: tensor<?x64xf32>, %gamma: tensor<64xf32>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [*, 0], %g = %gamma : tensor<64xf32> tiled [0]) -> (tensor<?x64xf32> tiled [*, 0]) {
    %n = ternary.rmsnorm %a, %g : tensor<?x?xf32>, tensor<?xf32>
    ternary.yield %n : tensor<?x?xf32>
  }
  func.return
}
// CHECK: kernel: ternary.rmsnorm needs operand 0 dim 1 whole (it reduces, scans, gathers or broadcasts along it), but grid axis 0 splits it across programs

// -----

// quant_act takes the absmax of a whole row.
func.func @f(%x: tensor<?x64xf32>) {
  %q = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [*, 0]) -> (tensor<?x64xi8> tiled [*, 0]) {
    %q1, %s1 = ternary.quant_act %a : tensor<?x?xf32> -> tensor<?x?xi8>, tensor<?x1xf32>
    ternary.yield %q1 : tensor<?x?xi8>
  }
  func.return
}
// CHECK: kernel: ternary.quant_act needs operand 0 dim 1 whole

// -----

// Every result must be split by every grid axis, or programs would write the same tile.
func.func @f(%x: tensor<?x64xi8>, %w: !ternary.trits<32x64>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xi8>, %t = %w : !ternary.trits<32x64> tiled [0, *]) -> (tensor<?x32xi32>) {
    %acc = ternary.accum %a, %t : tensor<?x64xi8>, !ternary.trits<?x64> -> tensor<?x?xi32>
    ternary.yield %acc : tensor<?x?xi32>
  }
  func.return
}
// CHECK: kernel: result 0 (tiled [*, *]) is not split by grid axis 0: every program along it would write the same tile

// -----

// All dims split by one grid axis have one extent.
func.func @f(%x: tensor<16x64xf32>) {
  %y = ternary.kernel grid [4] (%a = %x : tensor<16x64xf32> tiled [0, *]) -> (tensor<8x64xf32> tiled [0, *]) {
    %s = ternary.silu %a : tensor<?x64xf32>
    ternary.yield %s : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: grid axis 0 splits dims of different extents: operand 0 dim 0 has 16, result 0 dim 0 has 8

// -----

// accum sums over K: splitting the weight's K axis is rejected.
func.func @f(%x: tensor<?x64xi8>, %w: !ternary.trits<64x64>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xi8> tiled [0, *], %t = %w : !ternary.trits<64x64> tiled [*, 0]) -> (tensor<?x64xi32> tiled [0, *]) {
    %acc = ternary.accum %a, %t : tensor<?x64xi8>, !ternary.trits<64x?> -> tensor<?x64xi32>
    ternary.yield %acc : tensor<?x64xi32>
  }
  func.return
}
// CHECK: kernel: ternary.accum needs operand 1 dim 1 whole (it reduces, scans, gathers or broadcasts along it), but grid axis 0 splits it across programs

// -----

// The scan carries h along time: the time axis may not be split.
func.func @f(%x: tensor<?x?x64xf32>) {
  %h = ternary.kernel grid [8] (%a = %x : tensor<?x?x64xf32> tiled [*, 0, *]) -> (tensor<?x?x64xf32> tiled [*, 0, *]) {
    %h1, %hl1 = ternary.scan %a, %a : tensor<?x?x64xf32>, tensor<?x64xf32>
    ternary.yield %h1 : tensor<?x?x64xf32>
  }
  func.return
}
// CHECK: kernel: ternary.scan needs operand 0 dim 1 whole (it reduces, scans, gathers or broadcasts along it), but grid axis 0 splits it across programs

// -----

// A gather may pick any row of the table: V may not be split.
func.func @f(%table: tensor<100x64xf32>, %ids: tensor<100xi64>) {
  %e = ternary.kernel grid [10] (%t = %table : tensor<100x64xf32> tiled [0, *], %i = %ids : tensor<100xi64> tiled [0]) -> (tensor<100x64xf32> tiled [0, *]) {
    %r = ternary.embedding %t[%i] : tensor<?x64xf32>, tensor<?xi64> -> tensor<?x64xf32>
    ternary.yield %r : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: ternary.embedding needs operand 0 dim 0 whole

// -----

// An op sees only its own program's tiles: a split operand next to a whole one is rejected.
func.func @f(%x: tensor<?x64xf32>, %y: tensor<?x64xf32>) {
  %z = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *], %b = %y : tensor<?x64xf32>) -> (tensor<?x64xf32> tiled [0, *]) {
    %m = ternary.mul %a, %b : tensor<?x64xf32>
    ternary.yield %m : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: ternary.mul mixes tiles: operand 0 dim 0 is split by grid axis 0 but operand 1 dim 0 is whole

// -----

// A yielded value must be split as its result says.
func.func @f(%x: tensor<?x64xf32>) {
  %z = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32>) -> (tensor<?x64xf32> tiled [0, *]) {
    %s = ternary.silu %a : tensor<?x64xf32>
    ternary.yield %s : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: result 0 is tiled [0, *] but the body yields a value tiled [*, *]

// -----

// Values from outside must be passed as operands.
func.func @f(%x: tensor<?x64xf32>, %gamma: tensor<64xf32>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    %n = ternary.rmsnorm %a, %gamma : tensor<?x64xf32>, tensor<64xf32>
    ternary.yield %n : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: ternary.rmsnorm uses a value defined outside the kernel (its operand 1); pass it to the kernel as an operand

// -----

// Weights are operands too, not references inside the body.
func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    %g = ternary.weight @model.norm.weight : tensor<64xf32>
    %n = ternary.rmsnorm %a, %g : tensor<?x64xf32>, tensor<64xf32>
    ternary.yield %n : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: ternary.weight cannot appear in a kernel body (only ternary compute ops with a tiling rule)

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    %n = arith.addf %a, %a : tensor<?x64xf32>
    ternary.yield %n : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: arith.addf cannot appear in a kernel body (only ternary compute ops with a tiling rule)

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [0] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    ternary.yield %a : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: grid axis 0 has block size 0; expected >= 1

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [4] (%a = %x : tensor<?x64xf32> tiled [1, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    ternary.yield %a : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: operand 0 is split by grid axis 1, but the grid has 1 axes

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [4] (%a = %x : tensor<?x64xf32> tiled [0]) -> (tensor<?x64xf32> tiled [0, *]) {
    ternary.yield %a : tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: operand 0 has 2 dims but tile map [0] has 1

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [4] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    %s = ternary.silu %a : tensor<?x64xf32>
    ternary.yield %s, %s : tensor<?x64xf32>, tensor<?x64xf32>
  }
  func.return
}
// CHECK: kernel: body yields 2 values for 1 results

// -----

func.func @f(%x: tensor<?x64xf32>) {
  %y = ternary.kernel grid [4] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
  }
  func.return
}
// CHECK: Operation ternary.kernel contains empty block in single-block region that expects at least a terminator

// -----

// Generic form: the body's arguments must have the operands' tile types.
func.func @f(%x: tensor<8x64xf32>) {
  %y = "ternary.kernel"(%x) <{grid = array<i64: 4>, input_tiles = [#ternary.tile<[0, *]>], result_tiles = [#ternary.tile<[0, *]>]}> ({
  ^bb0(%a: tensor<8x64xf32>):
    "ternary.yield"(%a) : (tensor<8x64xf32>) -> ()
  }) : (tensor<8x64xf32>) -> tensor<8x64xf32>
  func.return
}
// CHECK: kernel: body argument 0 has type tensor<8x64xf32>, expected the tile type tensor<?x64xf32>

// -----

func.func @f(%x: tensor<?x64xf32>) {
  ternary.yield %x : tensor<?x64xf32>
}
// CHECK: 'ternary.yield' expects parent op 'ternary.kernel'
