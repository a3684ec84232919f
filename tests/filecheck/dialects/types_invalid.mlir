// Malformed ternary types and tile maps are rejected with a message saying what is wrong.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @f(%t: !ternary.trits<3x4x5>) {
  func.return
}
// CHECK: trits: expected a 2-D weight shape NxK, got [3, 4, 5]

// -----

func.func @f(%p: !ternary.packed<32x64, "3bit">) {
  func.return
}
// CHECK: packed: unknown format "3bit"; expected one of "2bit", "base3"

// -----

func.func @f(%p: !ternary.packed<64, "2bit">) {
  func.return
}
// CHECK: packed: expected a 2-D weight shape NxK, got [64]

// -----

"test.op"() {tile = #ternary.tile<[0, *, 0]>} : () -> ()
// CHECK: tile: a grid axis may split at most one dim, got [0, *, 0]
