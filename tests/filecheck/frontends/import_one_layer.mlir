// The imported IR of a one-layer model: the op sequence of one block, weights by symbol, B and T dynamic.
// RUN: rm -rf %t && mkdir -p %t && %python %S/make_checkpoint.py %t/ckpt --bf16
// RUN: mmfc import --model %t/ckpt -o %t/one.mlir --entry prefill && filecheck %s --input-file %t/one.mlir
// RUN: mmfc opt %t/one.mlir -o %t/two.mlir && filecheck %s --input-file %t/two.mlir

// The store is the checkpoint folder itself, named relative to the .mlir file (never copied).
// CHECK:      builtin.module attributes {mmfc.weights = "ckpt"} {
// CHECK-NEXT:   func.func @prefill(%input_ids: tensor<?x?xi64>, %attention_mask: tensor<?x?xi64>, %h0: tensor<?x16xf32>) -> (tensor<?x?x40xf32>, tensor<?x16xf32>) {
// CHECK-NEXT:     %0 = ternary.weight @model.embeddings.weight : tensor<40x16xbf16>
// CHECK-NEXT:     %1 = ternary.embedding %0[%input_ids]
// CHECK:          ternary.lower_bounds
// CHECK-NEXT:     %[[LB:.*]] = ternary.row %{{.*}}[0]
// attn_norm, then the i/f/g projections: each its own norm, activation quantization, accum, dequant
// CHECK:          %[[A:.*]] = ternary.rmsnorm %1, %{{.*}} : tensor<?x?x16xf32>, tensor<16xbf16>
// CHECK:          ternary.weight @model.layers.0.attn.i_proj.weight : tensor<16x16xbf16>
// CHECK-NEXT:     ternary.quant_weight
// CHECK-NEXT:     ternary.rmsnorm %[[A]]
// CHECK-NEXT:     ternary.quant_act
// CHECK-NEXT:     ternary.accum {{.*}} !ternary.trits<16x16> -> tensor<?x?x16xi32>
// CHECK-NEXT:     %[[I:.*]] = ternary.dequant
// CHECK:          @model.layers.0.attn.f_proj.weight
// CHECK:          %[[F:.*]] = ternary.dequant
// CHECK:          @model.layers.0.attn.g_proj.weight
// CHECK:          %[[G:.*]] = ternary.dequant
// the gates, the masked recurrence and the output gate norm
// CHECK-NEXT:     %[[SIG:.*]] = ternary.sigmoid %[[F]]
// CHECK-NEXT:     %[[FG:.*]] = ternary.lower_bound %[[SIG]], %[[LB]]
// CHECK-NEXT:     %[[OMF:.*]] = ternary.one_minus %[[FG]]
// CHECK-NEXT:     %[[IP:.*]] = ternary.silu_mul %[[I]], %[[OMF]]
// CHECK-NEXT:     %[[M:.*]] = ternary.mask %[[IP]], %attention_mask
// CHECK-NEXT:     %[[H:.*]], %[[HT:.*]] = ternary.scan %[[M]], %[[FG]] init %h0
// CHECK-NEXT:     ternary.weight @model.layers.0.attn.g_norm.weight
// CHECK-NEXT:     ternary.gate_norm %[[G]], %[[H]]
// CHECK:          @model.layers.0.attn.o_proj.weight
// residual + mlp norm, the GLU with one shared gate|up weight, the second residual
// CHECK:          %[[MN:.*]], %[[R:.*]] = ternary.residual_rmsnorm
// CHECK:          @model.layers.0.mlp.gate_proj.weight : tensor<48x16xbf16>
// CHECK:          %[[GATE:.*]], %[[UP:.*]] = ternary.split
// CHECK-NEXT:     ternary.silu_mul %[[GATE]], %[[UP]] : tensor<?x?x24xf32>
// CHECK:          @model.layers.0.mlp.down_proj.weight : tensor<16x24xbf16>
// CHECK:          %[[X1:.*]] = ternary.add %[[R]],
// final norm and the ternary head
// CHECK-NEXT:     ternary.weight @model.norm.weight
// CHECK:          @lm_head.weight : tensor<40x16xbf16>
// CHECK:          %[[LOGITS:.*]] = ternary.dequant
// CHECK-NEXT:     func.return %[[LOGITS]], %[[HT]] : tensor<?x?x40xf32>, tensor<?x16xf32>
// CHECK-NOT:      ternary.accum
