// xDSL's own cse, dce and canonicalize on ternary IR (the ops are Pure; kernels are as pure as their
// bodies; the kernel's canonicalization drops unused results and unread operands).
// RUN: xdsl-opt %s -p cse --split-input-file | filecheck %s --check-prefix=CSE
// RUN: xdsl-opt %s -p dce --split-input-file | filecheck %s --check-prefix=DCE
// RUN: xdsl-opt %s -p canonicalize --split-input-file | filecheck %s --check-prefix=CANON

func.func @shared_norm(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %g1 = ternary.weight @model.layers.0.attn_norm.weight : tensor<64xf32>
  %g2 = ternary.weight @model.layers.0.attn_norm.weight : tensor<64xf32>
  %g3 = ternary.weight @model.layers.0.mlp_norm.weight : tensor<64xf32>
  %a = ternary.rmsnorm %x, %g1 : tensor<?x64xf32>, tensor<64xf32>
  %b = ternary.rmsnorm %x, %g2 : tensor<?x64xf32>, tensor<64xf32>
  %c = ternary.rmsnorm %x, %g3 : tensor<?x64xf32>, tensor<64xf32>
  %s = ternary.add %a, %b : tensor<?x64xf32>
  func.return %s, %c : tensor<?x64xf32>, tensor<?x64xf32>
}
// CSE-LABEL: func.func @shared_norm
// CSE-NEXT:    %g1 = ternary.weight @model.layers.0.attn_norm.weight : tensor<64xf32>
// CSE-NEXT:    %g3 = ternary.weight @model.layers.0.mlp_norm.weight : tensor<64xf32>
// CSE-NEXT:    %a = ternary.rmsnorm %x, %g1 : tensor<?x64xf32>, tensor<64xf32>
// CSE-NEXT:    %c = ternary.rmsnorm %x, %g3 : tensor<?x64xf32>, tensor<64xf32>
// CSE-NEXT:    %s = ternary.add %a, %a : tensor<?x64xf32>

// -----

func.func @dead(%x: tensor<?x64xf32>, %w: !ternary.trits<32x64>) -> tensor<?x64xf32> {
  %q, %qs = ternary.quant_act %x : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x64xi8>, !ternary.trits<32x64> -> tensor<?x32xi32>
  %k = ternary.kernel grid [4] (%a = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
    %s = ternary.silu %a : tensor<?x64xf32>
    ternary.yield %s : tensor<?x64xf32>
  }
  %y = ternary.sigmoid %x : tensor<?x64xf32>
  func.return %y : tensor<?x64xf32>
}
// DCE-LABEL: func.func @dead
// DCE-NEXT:    %y = ternary.sigmoid %x : tensor<?x64xf32>
// DCE-NEXT:    func.return %y : tensor<?x64xf32>

// -----

func.func @unused_kernel_values(%x: tensor<?x64xf32>, %u: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %a, %b = ternary.kernel grid [4] (%x0 = %x : tensor<?x64xf32> tiled [0, *], %u0 = %u : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *], tensor<?x64xf32> tiled [0, *]) {
    %s = ternary.silu %x0 : tensor<?x64xf32>
    %t = ternary.sigmoid %u0 : tensor<?x64xf32>
    ternary.yield %s, %t : tensor<?x64xf32>, tensor<?x64xf32>
  }
  func.return %a : tensor<?x64xf32>
}
// CANON-LABEL: func.func @unused_kernel_values
// CANON-NEXT:    %a = ternary.kernel grid [4] (%x0 = %x : tensor<?x64xf32> tiled [0, *]) -> (tensor<?x64xf32> tiled [0, *]) {
// CANON-NEXT:      %s = ternary.silu %x0 : tensor<?x64xf32>
// CANON-NEXT:      ternary.yield %s : tensor<?x64xf32>
// CANON-NEXT:    }
// CANON-NEXT:    func.return %a : tensor<?x64xf32>
