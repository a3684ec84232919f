// The recurrence, embedding, lower bounds and slicing ops: printed form, and
// custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip
// RUN: xdsl-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @mlgru(%x: tensor<?x?x64xf32>, %f: tensor<?x?x64xf32>, %h0: tensor<?x64xf32>,
                 %ids: tensor<?x?xi64>, %ids32: tensor<1x1xi32>, %gu: tensor<?x?x256xf32>) {
  %h, %h_last = ternary.scan %x, %f : tensor<?x?x64xf32>, tensor<?x64xf32>
  %h2, %h2_last = ternary.scan %x, %f init %h0 : tensor<?x?x64xf32>, tensor<?x64xf32>
  %table = ternary.weight @model.embeddings.weight : tensor<100x64xbf16>
  %e = ternary.embedding %table[%ids] : tensor<100x64xbf16>, tensor<?x?xi64> -> tensor<?x?x64xf32>
  %e1 = ternary.embedding %table[%ids32] : tensor<100x64xbf16>, tensor<1x1xi32> -> tensor<1x1x64xf32>
  %param = ternary.weight @model.lower_bounds : tensor<4x64xbf16>
  %lbs = ternary.lower_bounds %param : tensor<4x64xbf16> -> tensor<4x64xf32>
  %lb = ternary.row %lbs[3] : tensor<4x64xf32> -> tensor<64xf32>
  %gate, %up = ternary.split %gu : tensor<?x?x256xf32> -> tensor<?x?x128xf32>, tensor<?x?x128xf32>
  func.return
}

// CHECK:      %h, %h_last = ternary.scan %x, %f : tensor<?x?x64xf32>, tensor<?x64xf32>
// CHECK-NEXT: %h2, %h2_last = ternary.scan %x, %f init %h0 : tensor<?x?x64xf32>, tensor<?x64xf32>
// CHECK-NEXT: %table = ternary.weight @model.embeddings.weight : tensor<100x64xbf16>
// CHECK-NEXT: %e = ternary.embedding %table[%ids] : tensor<100x64xbf16>, tensor<?x?xi64> -> tensor<?x?x64xf32>
// CHECK-NEXT: %e1 = ternary.embedding %table[%ids32] : tensor<100x64xbf16>, tensor<1x1xi32> -> tensor<1x1x64xf32>
// CHECK-NEXT: %param = ternary.weight @model.lower_bounds : tensor<4x64xbf16>
// CHECK-NEXT: %lbs = ternary.lower_bounds %param : tensor<4x64xbf16> -> tensor<4x64xf32>
// CHECK-NEXT: %lb = ternary.row %lbs[3] : tensor<4x64xf32> -> tensor<64xf32>
// CHECK-NEXT: %gate, %up = ternary.split %gu : tensor<?x?x256xf32> -> tensor<?x?x128xf32>, tensor<?x?x128xf32>

// GENERIC:      %h, %h_last = "ternary.scan"(%x, %f) : (tensor<?x?x64xf32>, tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x64xf32>)
// GENERIC-NEXT: %h2, %h2_last = "ternary.scan"(%x, %f, %h0) : (tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x64xf32>)
// GENERIC:      %lb = "ternary.row"(%lbs) <{index = 3 : i64}> : (tensor<4x64xf32>) -> tensor<64xf32>
// GENERIC-NEXT: %gate, %up = "ternary.split"(%gu) : (tensor<?x?x256xf32>) -> (tensor<?x?x128xf32>, tensor<?x?x128xf32>)
