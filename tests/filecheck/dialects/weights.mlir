// Weight references, offline weight quantization and unpacking: printed form, and
// custom -> generic -> custom identity.
// RUN: xdsl-opt %s | xdsl-opt --print-op-generic | xdsl-opt | filecheck %s
// RUN: xdsl-opt %s > %t.custom
// RUN: xdsl-opt %s --print-op-generic | xdsl-opt > %t.roundtrip
// RUN: diff %t.custom %t.roundtrip
// RUN: xdsl-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @weights() {
  %master = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<32x64xbf16>
  %trits, %scale = ternary.quant_weight %master : tensor<32x64xbf16> -> !ternary.trits<32x64>, f32
  %t = ternary.weight @model.layers.0.attn.o_proj.weight : !ternary.trits<32x64>
  %s = ternary.weight @model.layers.0.attn.o_proj.weight_scale : tensor<f32>
  %p = ternary.weight @model.layers.0.attn.f_proj.weight : !ternary.packed<32x64, "2bit">
  %u = ternary.unpack %p : !ternary.packed<32x64, "2bit"> -> !ternary.trits<32x64>
  %p3 = ternary.weight @lm_head.weight : !ternary.packed<8x7, "base3">
  %u3 = ternary.unpack %p3 : !ternary.packed<8x7, "base3"> -> !ternary.trits<8x7>
  func.return
}

// CHECK:      %master = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<32x64xbf16>
// CHECK-NEXT: %trits, %scale = ternary.quant_weight %master : tensor<32x64xbf16> -> !ternary.trits<32x64>, f32
// CHECK-NEXT: %t = ternary.weight @model.layers.0.attn.o_proj.weight : !ternary.trits<32x64>
// CHECK-NEXT: %s = ternary.weight @model.layers.0.attn.o_proj.weight_scale : tensor<f32>
// CHECK-NEXT: %p = ternary.weight @model.layers.0.attn.f_proj.weight : !ternary.packed<32x64, "2bit">
// CHECK-NEXT: %u = ternary.unpack %p : !ternary.packed<32x64, "2bit"> -> !ternary.trits<32x64>
// CHECK-NEXT: %p3 = ternary.weight @lm_head.weight : !ternary.packed<8x7, "base3">
// CHECK-NEXT: %u3 = ternary.unpack %p3 : !ternary.packed<8x7, "base3"> -> !ternary.trits<8x7>

// GENERIC:      %master = "ternary.weight"() <{sym = @model.layers.0.attn.i_proj.weight}> : () -> tensor<32x64xbf16>
// GENERIC-NEXT: %trits, %scale = "ternary.quant_weight"(%master) : (tensor<32x64xbf16>) -> (!ternary.trits<32x64>, f32)
// GENERIC:      %u = "ternary.unpack"(%p) : (!ternary.packed<32x64, "2bit">) -> !ternary.trits<32x64>
