// Two BitLinears whose weights are referenced where they are used, one of them twice.
// RUN: mmfc opt %s -p sort-weight-refs | filecheck %s
// RUN: mmfc opt %s -p 'sort-weight-refs{order=first-use}' | filecheck %s --check-prefix=FIRST

func.func @two_linears(%x: tensor<?x8xf32>) -> tensor<?x4xf32> {
  %g1 = ternary.weight @b.norm.weight : tensor<8xf32>
  %n1 = ternary.rmsnorm %x, %g1 : tensor<?x8xf32>, tensor<8xf32>
  %q1, %s1 = ternary.quant_act %n1 : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %w1 = ternary.weight @b.weight : !ternary.trits<8x8>
  %acc1 = ternary.accum %q1, %w1 : tensor<?x8xi8>, !ternary.trits<8x8> -> tensor<?x8xi32>
  %ws1 = ternary.weight @b.weight_scale : f32
  %y1 = ternary.dequant %acc1, %s1, %ws1 : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  %g2 = ternary.weight @a.norm.weight : tensor<8xf32>
  %n2 = ternary.rmsnorm %y1, %g2 : tensor<?x8xf32>, tensor<8xf32>
  %q2, %s2 = ternary.quant_act %n2 : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %w2 = ternary.weight @a.weight : !ternary.trits<4x8>
  %acc2 = ternary.accum %q2, %w2 : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
  %ws2 = ternary.weight @b.weight_scale : f32
  %y2 = ternary.dequant %acc2, %s2, %ws2 : tensor<?x4xi32>, tensor<?x1xf32>, f32 -> tensor<?x4xf32>
  func.return %y2 : tensor<?x4xf32>
}

// Sorted by symbol, the second read of @b.weight_scale merged into the first.
// CHECK:      func.func @two_linears(%x: tensor<?x8xf32>) -> tensor<?x4xf32> {
// CHECK-NEXT:   %g2 = ternary.weight @a.norm.weight : tensor<8xf32>
// CHECK-NEXT:   %w2 = ternary.weight @a.weight : !ternary.trits<4x8>
// CHECK-NEXT:   %g1 = ternary.weight @b.norm.weight : tensor<8xf32>
// CHECK-NEXT:   %w1 = ternary.weight @b.weight : !ternary.trits<8x8>
// CHECK-NEXT:   %ws1 = ternary.weight @b.weight_scale : f32
// CHECK-NEXT:   %n1 = ternary.rmsnorm %x, %g1
// CHECK:        %y2 = ternary.dequant %acc2, %s2, %ws1
// CHECK-NOT:    ternary.weight

// FIRST:      func.func @two_linears
// FIRST-NEXT:   %g1 = ternary.weight @b.norm.weight : tensor<8xf32>
// FIRST-NEXT:   %w1 = ternary.weight @b.weight : !ternary.trits<8x8>
// FIRST-NEXT:   %ws1 = ternary.weight @b.weight_scale : f32
// FIRST-NEXT:   %g2 = ternary.weight @a.norm.weight : tensor<8xf32>
// FIRST-NEXT:   %w2 = ternary.weight @a.weight : !ternary.trits<4x8>
// FIRST-NEXT:   %n1 = ternary.rmsnorm %x, %g1
// FIRST-NOT:    ternary.weight
