// fold-weight-quant: quant_weight of a float master becomes stored trits + scale (a new store layered
// over the input); what it leaves alone; and its diagnostics.
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python %S/make_store.py write %t/in.safetensors float:a.weight:4x8 float:gate.weight:6x8:bf16 float:tied.weight:5x8 ternary:tern.weight:4x8 trits:int.weight:4x8 float:odd.weight:4x7
// RUN: cp %s %t/fold.mlir
// RUN: mmfc opt %t/fold.mlir --split-input-file --verify-diagnostics -p fold-weight-quant -o %t/out.mlir
// RUN: filecheck %s --input-file %t/out.mlir
// RUN: %python %S/make_store.py dump %t/out.weights.safetensors | filecheck %s --check-prefix=STORE
// RUN: %python %S/make_store.py dump %t/in.safetensors | filecheck %s --check-prefix=INPUT
// Without a place to write it (stdout), the new store stays in memory.
// RUN: mmfc opt %t/fold.mlir --split-input-file --verify-diagnostics -p fold-weight-quant | filecheck %s --check-prefix=MEMORY
// From a real checkpoint: every BitLinear folded, masters read in place (the checkpoint is the base).
// RUN: %python %S/../frontends/make_checkpoint.py %t/ckpt --bf16
// RUN: mmfc import --model %t/ckpt -o %t/imported.mlir
// RUN: mmfc opt %t/imported.mlir -p fold-weight-quant -o %t/folded.mlir
// RUN: filecheck %s --check-prefix=IMPORT --input-file %t/folded.mlir
// RUN: %python %S/make_store.py dump %t/folded.weights.safetensors | filecheck %s --check-prefix=IMPORT-STORE

builtin.module attributes {mmfc.weights = "in.safetensors"} {
  func.func @prefill(%x: tensor<?x8xi8>, %ids: tensor<?xi64>, %m: tensor<3x8xf32>) -> (tensor<?x4xi32>, tensor<?x6xi32>, f32, tensor<?x8xf32>, !ternary.trits<3x8>) {
    %w = ternary.weight @a.weight : tensor<4x8xf32>
    %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
    %acc = ternary.accum %x, %t : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
    %g = ternary.weight @gate.weight : tensor<6x8xbf16>
    %gt, %gs = ternary.quant_weight %g : tensor<6x8xbf16> -> !ternary.trits<6x8>, tensor<f32>
    %gacc = ternary.accum %x, %gt : tensor<?x8xi8>, !ternary.trits<6x8> -> tensor<?x6xi32>
    %e = ternary.weight @tied.weight : tensor<5x8xf32>
    %emb = ternary.embedding %e[%ids] : tensor<5x8xf32>, tensor<?xi64> -> tensor<?x8xf32>
    %mt, %ms = ternary.quant_weight %m : tensor<3x8xf32> -> !ternary.trits<3x8>, f32
    func.return %acc, %gacc, %s, %emb, %mt : tensor<?x4xi32>, tensor<?x6xi32>, f32, tensor<?x8xf32>, !ternary.trits<3x8>
  }
  func.func @decode_step(%x: tensor<?x8xi8>) -> (tensor<?x4xi32>, !ternary.trits<5x8>) {
    %w = ternary.weight @a.weight : tensor<4x8xf32>
    %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
    %acc = ternary.accum %x, %t : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
    %e = ternary.weight @tied.weight : tensor<5x8xf32>
    %et, %es = ternary.quant_weight %e : tensor<5x8xf32> -> !ternary.trits<5x8>, f32
    func.return %acc, %et : tensor<?x4xi32>, !ternary.trits<5x8>
  }
}

// The new store sits next to -o and layers over the input store.
// CHECK:       builtin.module attributes {mmfc.weights = "out.weights.safetensors"} {
// CHECK-LABEL: func.func @prefill
// CHECK-NEXT:    %t = ternary.weight @a.weight : !ternary.trits<4x8>
// CHECK-NEXT:    %s = ternary.weight @a.weight_scale : f32
// CHECK-NEXT:    %acc = ternary.accum %x, %t : tensor<?x8xi8>, !ternary.trits<4x8> -> tensor<?x4xi32>
// The fused gate|up weight is one tensor: one scale; the scale keeps the quant_weight's type.
// CHECK-NEXT:    %gt = ternary.weight @gate.weight : !ternary.trits<6x8>
// CHECK-NEXT:    %gs = ternary.weight @gate.weight_scale : tensor<f32>
// CHECK-NEXT:    %gacc = ternary.accum %x, %gt
// A master with another user (here an embedding, in the other function) is left alone everywhere.
// CHECK-NEXT:    %e = ternary.weight @tied.weight : tensor<5x8xf32>
// CHECK-NEXT:    %emb = ternary.embedding %e[%ids]
// A quant_weight of something that is not a weight ref is left alone.
// CHECK-NEXT:    %mt, %ms = ternary.quant_weight %m : tensor<3x8xf32> -> !ternary.trits<3x8>, f32
// The same symbol in another function: the same stored trits (quantized once).
// CHECK-LABEL: func.func @decode_step
// CHECK-NEXT:    %t = ternary.weight @a.weight : !ternary.trits<4x8>
// CHECK-NEXT:    %s = ternary.weight @a.weight_scale : f32
// CHECK-NEXT:    %acc = ternary.accum %x, %t
// CHECK-NEXT:    %e = ternary.weight @tied.weight : tensor<5x8xf32>
// CHECK-NEXT:    %et, %es = ternary.quant_weight %e : tensor<5x8xf32> -> !ternary.trits<5x8>, f32
// CHECK-NOT:     ternary.weight @a.weight : tensor

// The new file holds only what the pass created: int8 trits and f32 scalar scales, nothing for tied.
// STORE:      a.weight: I8 [4, 8]
// STORE-NEXT: a.weight_scale: F32 []
// STORE-NEXT: gate.weight: I8 [6, 8]
// STORE-NEXT: gate.weight_scale: F32 []
// STORE-NEXT: base: in.safetensors

// The input store is unchanged: the float masters are still there, no scales were added.
// INPUT:      a.weight: F32 [4, 8]
// INPUT-NEXT: gate.weight: BF16 [6, 8]
// INPUT-NEXT: int.weight: I8 [4, 8]
// INPUT-NEXT: odd.weight: F32 [4, 7]
// INPUT-NEXT: tern.weight: F32 [4, 8]
// INPUT-NEXT: tied.weight: F32 [5, 8]
// INPUT-NOT:  base

// MEMORY:      builtin.module attributes {mmfc.weights = "<memory>"} {
// MEMORY:      %t = ternary.weight @a.weight : !ternary.trits<4x8>

// IMPORT:      builtin.module attributes {mmfc.weights = "folded.weights.safetensors"} {
// IMPORT-NOT:  ternary.quant_weight
// IMPORT:      ternary.weight @model.layers.0.attn.i_proj.weight : !ternary.trits<16x16>
// IMPORT-NEXT: ternary.weight @model.layers.0.attn.i_proj.weight_scale : f32
// IMPORT:      ternary.weight @model.layers.0.mlp.gate_proj.weight : !ternary.trits<48x16>
// IMPORT-NEXT: ternary.weight @model.layers.0.mlp.gate_proj.weight_scale : f32
// IMPORT:      ternary.weight @lm_head.weight : !ternary.trits<40x16>
// IMPORT-NOT:  ternary.quant_weight
// IMPORT-STORE: lm_head.weight: I8 [40, 16]
// IMPORT-STORE: lm_head.weight_scale: F32 []
// IMPORT-STORE: model.layers.0.mlp.gate_proj.weight: I8 [48, 16]
// IMPORT-STORE-NEXT: model.layers.0.mlp.gate_proj.weight_scale: F32 []
// IMPORT-STORE-NOT: embeddings
// IMPORT-STORE: base: ckpt

// -----

// Never quantize ternary data again: the absmean scale is not idempotent.
builtin.module attributes {mmfc.weights = "in.safetensors"} {
  %w = ternary.weight @tern.weight : tensor<4x8xf32>
  %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
}
// CHECK: fold.mlir:105:3: pass 'fold-weight-quant': 'ternary.quant_weight' op @tern.weight is already ternary-valued (at most 3 distinct values): absmean weight quantization is not idempotent, {{.*}} shrinks the scale by the fraction of non-zeros (about 0.69x){{.*}}reference them as !ternary.trits

// -----

// Stored trits read through the float path are refused too (they are not a float master).
builtin.module attributes {mmfc.weights = "in.safetensors"} {
  %w = ternary.weight @int.weight : tensor<4x8xf32>
  %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
}
// CHECK: fold.mlir:113:3: pass 'fold-weight-quant': 'ternary.weight' op @int.weight is stored as I8 in the weight store {{.*}}in.safetensors, not as a float master; stored trits are referenced as !ternary.trits (with @int.weight_scale as the scale)

// -----

// The IR's shape or dtype must be the stored one.
builtin.module attributes {mmfc.weights = "in.safetensors"} {
  %w = ternary.weight @odd.weight : tensor<4x8xf32>
  %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
}
// CHECK: fold.mlir:122:3: pass 'fold-weight-quant': 'ternary.weight' op @odd.weight is stored as F32 of shape [4x7] in the weight store {{.*}}in.safetensors, but the IR reads it as tensor<4x8xf32>

// -----

builtin.module attributes {mmfc.weights = "in.safetensors"} {
  %w = ternary.weight @missing.weight : tensor<4x8xf32>
  %t, %s = ternary.quant_weight %w : tensor<4x8xf32> -> !ternary.trits<4x8>, f32
}
// CHECK: fold.mlir:130:3: pass 'fold-weight-quant': 'ternary.weight' op {{.*}}in.safetensors: no tensor missing.weight in the weight store
