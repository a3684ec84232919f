// Verifier messages of the weight ops.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

%w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<32x64xi32>
// CHECK: weight: @model.layers.0.attn.i_proj.weight has type tensor<32x64xi32>; expected a float tensor, !ternary.trits, !ternary.packed or an f32 scale

// -----

%w = ternary.weight @model.layers.0.attn.i_proj.weight : !ternary.trits<?x64>
// CHECK: weight: @model.layers.0.attn.i_proj.weight must have a static shape, got !ternary.trits<?x64>

// -----

%w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<32x64xf32>
%t, %s = ternary.quant_weight %w : tensor<32x64xf32> -> !ternary.trits<32x32>, f32
// CHECK: quant_weight: trits has shape [32, 32], expected [32, 64] (the master's shape)

// -----

%w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<32x64xf32>
%t, %s = ternary.quant_weight %w : tensor<32x64xf32> -> !ternary.trits<32x64>, f16
// CHECK: quant_weight: scale must be an f32 scale (f32 or tensor<f32>), got f16

// -----

%w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<2x32x64xf32>
%t, %s = ternary.quant_weight %w : tensor<2x32x64xf32> -> !ternary.trits<32x64>, f32
// CHECK: quant_weight: master weight must be 2-D [N, K], got tensor<2x32x64xf32>

// -----

%p = ternary.weight @w : !ternary.packed<32x64, "2bit">
%t = ternary.unpack %p : !ternary.packed<32x64, "2bit"> -> !ternary.trits<32x60>
// CHECK: unpack: trits has shape [32, 60], expected [32, 64] (the packed shape)
