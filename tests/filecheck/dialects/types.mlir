// Ternary types and the tile attribute: printed form, and custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip

func.func @types(%t: !ternary.trits<32x64>, %tile: !ternary.trits<?x64>,
                 %p2: !ternary.packed<32x64, "2bit">, %p3: !ternary.packed<32x61, "base3">) {
  func.return
}
// CHECK: func.func @types(%t: !ternary.trits<32x64>, %tile: !ternary.trits<?x64>, %p2: !ternary.packed<32x64, "2bit">, %p3: !ternary.packed<32x61, "base3">)

"test.op"() {tile = #ternary.tile<[0, *, 1]>, whole = #ternary.tile<[]>} : () -> ()
// CHECK: "test.op"() {tile = #ternary.tile<[0, *, 1]>, whole = #ternary.tile<[]>} : () -> ()
