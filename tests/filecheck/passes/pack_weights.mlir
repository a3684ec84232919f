// pack-weights: trits refs become packed refs (bytes from numerics.pack in a new layered store); accum
// and kernels take packed weights, other consumers get a ternary.unpack; packed weights stay as they are.
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python %S/make_store.py write %t/in.safetensors trits:a.weight:4x8 scale:a.weight_scale: trits:b.weight:5x10 trits:k.weight:6x8 trits:y.weight:6x8 trits:p.weight:3x8 float:f.weight:4x8
// RUN: cp %s %t/pack.mlir
// RUN: mmfc opt %t/pack.mlir --split-input-file --verify-diagnostics -p pack-weights -o %t/out2.mlir
// RUN: filecheck %s --input-file %t/out2.mlir --check-prefixes=CHECK,TWO
// RUN: %python %S/make_store.py dump %t/out2.weights.safetensors | filecheck %s --check-prefix=STORE2
// RUN: %python %S/make_store.py check-packed %t/out2.weights.safetensors b.weight 2bit %t/in.safetensors b.weight | filecheck %s --check-prefix=BYTES
// RUN: mmfc opt %t/pack.mlir --split-input-file --verify-diagnostics -p 'pack-weights{format=base3}' -o %t/out3.mlir
// RUN: filecheck %s --input-file %t/out3.mlir --check-prefixes=CHECK,THREE
// RUN: %python %S/make_store.py dump %t/out3.weights.safetensors | filecheck %s --check-prefix=STORE3
// RUN: %python %S/make_store.py check-packed %t/out3.weights.safetensors b.weight base3 %t/in.safetensors b.weight | filecheck %s --check-prefix=BYTES
// Packing twice changes nothing: every weight is already packed.
// RUN: mmfc opt %t/out3.mlir --split-input-file --parsing-diagnostics -p pack-weights -o %t/again.mlir
// RUN: filecheck %s --input-file %t/again.mlir --check-prefix=AGAIN
// RUN: not mmfc opt %s -p 'pack-weights{format=3bit}' 2>&1 | filecheck %s --check-prefix=BADFMT

builtin.module attributes {mmfc.weights = "in.safetensors"} {
  func.func @prefill(%x: tensor<?x8xi8>, %s: tensor<?x1xf32>, %xb: tensor<?x10xi8>) -> (tensor<?x4xf32>, tensor<?x5xi32>, !ternary.trits<5x10>) {
    %a = ternary.weight @a.weight : !ternary.trits<4x8>
    %as = ternary.weight @a.weight_scale : f32
    %acc = ternary.accum %x, %a : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
    %y = ternary.dequant %acc, %s, %as : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
    %b = ternary.weight @b.weight : !ternary.trits<5x10>
    %bacc = ternary.accum %xb, %b : tensor<?x10xi8>, !ternary.trits<5x10> -> tensor<?x5xi32>
    func.return %y, %bacc, %b : tensor<?x4xf32>, tensor<?x5xi32>, !ternary.trits<5x10>
  }
  func.func @decode_step(%x: tensor<?x8xi8>) -> (tensor<?x4xi32>, tensor<?x6xi32>, !ternary.trits<6x8>, tensor<?x3xi32>) {
    %a = ternary.weight @a.weight : !ternary.trits<4x8>
    %acc = ternary.accum %x, %a : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
    %k = ternary.weight @k.weight : !ternary.trits<6x8>
    %kacc = ternary.kernel grid [2] (%q = %x : tensor<?x8xi8>, %t = %k : !ternary.trits<6x8> tiled [0, *]) -> (tensor<?x6xi32> tiled [*, 0]) {
      %r = ternary.accum %q, %t : tensor<?x8xi8>, !ternary.trits<?x8> -> tensor<?x?xi32>
      ternary.yield %r : tensor<?x?xi32>
    }
    %yw = ternary.weight @y.weight : !ternary.trits<6x8>
    %ycopy = ternary.kernel grid [] (%t = %yw : !ternary.trits<6x8>) -> (!ternary.trits<6x8>) {
      ternary.yield %t : !ternary.trits<6x8>
    }
    %p = ternary.weight @p.weight : !ternary.packed<3x8, "base3">
    %pacc = ternary.accum %x, %p : tensor<?x8xi8>, !ternary.packed<3x8, "base3"> -> tensor<?x3xi32>
    func.return %acc, %kacc, %ycopy, %pacc : tensor<?x4xi32>, tensor<?x6xi32>, !ternary.trits<6x8>, tensor<?x3xi32>
  }
}

// CHECK:       builtin.module attributes {mmfc.weights = "{{out2|out3}}.weights.safetensors"} {
// CHECK-LABEL: func.func @prefill
// accum takes the packed weight; the scale is left alone.
// TWO-NEXT:      %a = ternary.weight @a.weight : !ternary.packed<4x8, "2bit">
// THREE-NEXT:    %a = ternary.weight @a.weight : !ternary.packed<4x8, "base3">
// CHECK-NEXT:    %as = ternary.weight @a.weight_scale : f32
// TWO-NEXT:      %acc = ternary.accum %x, %a : tensor<?x8xi8>, !ternary.packed<4x8, "2bit"> -> tensor<?x4xi32>
// THREE-NEXT:    %acc = ternary.accum %x, %a : tensor<?x8xi8>, !ternary.packed<4x8, "base3"> -> tensor<?x4xi32>
// CHECK-NEXT:    %y = ternary.dequant %acc, %s, %as
// Another consumer (the return) reads an unpack of the packed weight; accum still takes it packed.
// TWO-NEXT:      %b = ternary.weight @b.weight : !ternary.packed<5x10, "2bit">
// TWO-NEXT:      %[[U:.*]] = ternary.unpack %b : !ternary.packed<5x10, "2bit"> -> !ternary.trits<5x10>
// THREE-NEXT:    %b = ternary.weight @b.weight : !ternary.packed<5x10, "base3">
// THREE-NEXT:    %[[U:.*]] = ternary.unpack %b : !ternary.packed<5x10, "base3"> -> !ternary.trits<5x10>
// CHECK-NEXT:    %bacc = ternary.accum %xb, %b :
// CHECK-NEXT:    func.return %y, %bacc, %[[U]] : tensor<?x4xf32>, tensor<?x5xi32>, !ternary.trits<5x10>
// The same symbol in another function: the same packed tensor.
// CHECK-LABEL: func.func @decode_step
// TWO-NEXT:      %a = ternary.weight @a.weight : !ternary.packed<4x8, "2bit">
// THREE-NEXT:    %a = ternary.weight @a.weight : !ternary.packed<4x8, "base3">
// CHECK-NEXT:    %acc = ternary.accum %x, %a
// A kernel operand: the kernel takes the packed weight (its N still split across programs) and the
// body's block argument has the packed tile type, read directly by accum.
// TWO-NEXT:      %k = ternary.weight @k.weight : !ternary.packed<6x8, "2bit">
// TWO-NEXT:      %kacc = ternary.kernel grid [2] (%q = %x : tensor<?x8xi8>, %t = %k : !ternary.packed<6x8, "2bit"> tiled [0, *]) -> (tensor<?x6xi32> tiled [*, 0]) {
// TWO-NEXT:        %r = ternary.accum %q, %t : tensor<?x8xi8>, !ternary.packed<?x8, "2bit"> -> tensor<?x?xi32>
// THREE-NEXT:    %k = ternary.weight @k.weight : !ternary.packed<6x8, "base3">
// THREE-NEXT:    %kacc = ternary.kernel grid [2] (%q = %x : tensor<?x8xi8>, %t = %k : !ternary.packed<6x8, "base3"> tiled [0, *]) -> (tensor<?x6xi32> tiled [*, 0]) {
// THREE-NEXT:      %r = ternary.accum %q, %t : tensor<?x8xi8>, !ternary.packed<?x8, "base3"> -> tensor<?x?xi32>
// CHECK-NEXT:      ternary.yield %r : tensor<?x?xi32>
// CHECK-NEXT:    }
// A body op other than accum that needs trits reads an unpack made at the start of the body.
// TWO-NEXT:      %yw = ternary.weight @y.weight : !ternary.packed<6x8, "2bit">
// TWO-NEXT:      %ycopy = ternary.kernel grid [] (%[[YT:.*]] = %yw : !ternary.packed<6x8, "2bit">) -> (!ternary.trits<6x8>) {
// TWO-NEXT:        %[[YU:.*]] = ternary.unpack %[[YT]] : !ternary.packed<6x8, "2bit"> -> !ternary.trits<6x8>
// THREE-NEXT:    %yw = ternary.weight @y.weight : !ternary.packed<6x8, "base3">
// THREE-NEXT:    %ycopy = ternary.kernel grid [] (%[[YT:.*]] = %yw : !ternary.packed<6x8, "base3">) -> (!ternary.trits<6x8>) {
// THREE-NEXT:      %[[YU:.*]] = ternary.unpack %[[YT]] : !ternary.packed<6x8, "base3"> -> !ternary.trits<6x8>
// CHECK-NEXT:      ternary.yield %[[YU]] : !ternary.trits<6x8>
// CHECK-NEXT:    }
// An already packed weight is left as it is, whatever its format.
// CHECK-NEXT:    %p = ternary.weight @p.weight : !ternary.packed<3x8, "base3">
// CHECK-NEXT:    %pacc = ternary.accum %x, %p : tensor<?x8xi8>, !ternary.packed<3x8, "base3"> -> tensor<?x3xi32>
// CHECK-NOT:     !ternary.trits<4x8>
// CHECK:         // -----

// One row of K trits takes ceil(K/4) bytes (2bit) or ceil(K/5) bytes (base3); only packed weights are new.
// STORE2:      a.weight: U8 [4, 2]
// STORE2-NEXT: b.weight: U8 [5, 3]
// STORE2-NEXT: k.weight: U8 [6, 2]
// STORE2-NEXT: y.weight: U8 [6, 2]
// STORE2-NEXT: base: in.safetensors
// STORE3:      a.weight: U8 [4, 2]
// STORE3-NEXT: b.weight: U8 [5, 2]
// STORE3-NEXT: k.weight: U8 [6, 2]
// STORE3-NEXT: y.weight: U8 [6, 2]
// STORE3-NEXT: base: in.safetensors
// BYTES: packed b.weight ok

// AGAIN:     builtin.module attributes {mmfc.weights = "out3.weights.safetensors"} {
// AGAIN:     %a = ternary.weight @a.weight : !ternary.packed<4x8, "base3">
// AGAIN-NOT: !ternary.packed{{.*}}"2bit"
// AGAIN:     %[[U:.*]] = ternary.unpack %b : !ternary.packed<5x10, "base3"> -> !ternary.trits<5x10>
// AGAIN-NOT: ternary.unpack %b
// AGAIN-NOT: !ternary.packed{{.*}}"2bit"
// AGAIN:     // -----

// BADFMT: mmfc: error: pass 'pack-weights': option format must be one of '2bit', 'base3', got '3bit'

// -----

// Stored data that is not int8 trits of the IR's shape cannot be packed.
builtin.module attributes {mmfc.weights = "in.safetensors"} {
  %f = ternary.weight @f.weight : !ternary.trits<4x8>
}
// CHECK: pack.mlir:120:3: pass 'pack-weights': 'ternary.weight' op @f.weight is stored as F32 of shape [4x8] in the weight store {{.*}}in.safetensors, but the IR reads it as !ternary.trits<4x8> (int8 trits of shape [4, 8])
