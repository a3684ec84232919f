// A pre-quantized checkpoint imports as stored trits + scales: no quant_weight is left to do.
// RUN: rm -rf %t && mkdir -p %t && %python %S/make_checkpoint.py %t/q --quantized
// RUN: mmfc import --model %t/q -o %t/q.mlir --entry decode_step && filecheck %s --input-file %t/q.mlir

// CHECK:     func.func @decode_step(%input_ids: tensor<?xi64>, %h0: tensor<?x16xf32>)
// CHECK-NOT: ternary.quant_weight
// CHECK:     ternary.weight @model.layers.0.attn.i_proj.weight : !ternary.trits<16x16>
// CHECK:     ternary.weight @model.layers.0.attn.i_proj.weight_scale : f32
// CHECK:     ternary.scan_step
// CHECK-NOT: ternary.mask
// CHECK-NOT: ternary.quant_weight
