// check-matmul-free: a floating-point matrix product left in the module is an error at the op;
// integer products, ternary accumulation and reductions that are not products pass, unchanged.
// RUN: not mmfc opt %s --split-input-file -p check-matmul-free 2>&1 | filecheck %s --check-prefix=FIRST
// RUN: mmfc opt %s --split-input-file --verify-diagnostics --allow-unregistered-dialect -p check-matmul-free | filecheck %s

func.func @f32_matmul(%a: tensor<4x8xf32>, %b: tensor<8x3xf32>, %c: tensor<4x3xf32>) -> tensor<4x3xf32> {
  %r = linalg.matmul ins(%a, %b : tensor<4x8xf32>, tensor<8x3xf32>) outs(%c : tensor<4x3xf32>) -> tensor<4x3xf32>
  func.return %r : tensor<4x3xf32>
}
// FIRST: mmfc: error: {{.*}}check_matmul_free.mlir:7:3: pass 'check-matmul-free': 'linalg.matmul' op floating-point matrix product (f32 x f32): the model must be matmul-free after -O2
// CHECK: check_matmul_free.mlir:7:3: pass 'check-matmul-free': 'linalg.matmul' op floating-point matrix product (f32 x f32): the model must be matmul-free after -O2

// -----

// A generic reduction that multiplies two different float inputs is a matrix product; the message
// counts the other products of the module.
func.func @generic_matmul(%a: tensor<4x8xbf16>, %b: tensor<8x3xbf16>, %c: tensor<4x3xf32>, %a2: tensor<4x8xf32>, %b2: tensor<8x3xf32>) -> tensor<4x3xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(i, j, k) -> (i, k)>, affine_map<(i, j, k) -> (k, j)>, affine_map<(i, j, k) -> (i, j)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : tensor<4x8xbf16>, tensor<8x3xbf16>) outs(%c : tensor<4x3xf32>) {
  ^bb0(%x: bf16, %y: bf16, %acc: f32):
    %xf = arith.extf %x : bf16 to f32
    %yf = arith.extf %y : bf16 to f32
    %p = arith.mulf %xf, %yf : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<4x3xf32>
  %r2 = linalg.matmul ins(%a2, %b2 : tensor<4x8xf32>, tensor<8x3xf32>) outs(%c : tensor<4x3xf32>) -> tensor<4x3xf32>
  func.return %r : tensor<4x3xf32>
}
// CHECK: check_matmul_free.mlir:18:3: pass 'check-matmul-free': 'linalg.generic' op floating-point matrix product (f32 x f32 in a reduction): the model must be matmul-free after -O2 (1 more in the module)

// -----

// Other dialects' matmul/dot ops, judged by name (here unregistered: the message names the op).
func.func @hlo_dot(%a: tensor<4x8xf16>, %b: tensor<8x3xf16>) -> tensor<4x3xf16> {
  %r = "stablehlo.dot_general"(%a, %b) : (tensor<4x8xf16>, tensor<8x3xf16>) -> tensor<4x3xf16>
  func.return %r : tensor<4x3xf16>
}
// CHECK: check_matmul_free.mlir:35:3: pass 'check-matmul-free': 'builtin.unregistered' op floating-point matrix product ('stablehlo.dot_general', f16 x f16): the model must be matmul-free after -O2

// -----

func.func @triton_dot(%a: tensor<16x16xf32>, %b: tensor<16x16xf32>, %c: tensor<16x16xf32>) -> tensor<16x16xf32> {
  %r = "tt.dot"(%a, %b, %c) : (tensor<16x16xf32>, tensor<16x16xf32>, tensor<16x16xf32>) -> tensor<16x16xf32>
  func.return %r : tensor<16x16xf32>
}
// CHECK: check_matmul_free.mlir:43:3: pass 'check-matmul-free': 'builtin.unregistered' op floating-point matrix product ('tt.dot', f32 x f32)

// -----

// Not matrix products: an integer matmul (what a backend may lower accum to; xDSL's linalg.matmul
// wants one element type, so i32 here), a sum of squares
// (one input times itself), a reduction scaled by a constant, elementwise float multiplies.
func.func @allowed(%q: tensor<4x8xi32>, %t: tensor<8x3xi32>, %acc: tensor<4x3xi32>, %x: tensor<4x8xf32>, %o: tensor<4xf32>) -> (tensor<4x3xi32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) {
  %r = linalg.matmul ins(%q, %t : tensor<4x8xi32>, tensor<8x3xi32>) outs(%acc : tensor<4x3xi32>) -> tensor<4x3xi32>
  %ss = linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%v: f32, %a: f32):
    %sq = arith.mulf %v, %v : f32
    %s = arith.addf %a, %sq : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  %sc = linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x8xf32>) outs(%o : tensor<4xf32>) {
  ^bb0(%v: f32, %a: f32):
    %c = arith.constant 0.125 : f32
    %m = arith.mulf %v, %c : f32
    %s = arith.addf %a, %m : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  %e = arith.mulf %x, %x : tensor<4x8xf32>
  func.return %r, %ss, %sc, %e : tensor<4x3xi32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>
}
// CHECK-LABEL: func.func @allowed
// CHECK:         linalg.matmul {{.*}}tensor<4x8xi32>, tensor<8x3xi32>
// CHECK:         arith.mulf %v, %v
// CHECK:         arith.mulf %v{{.*}}, %c
// CHECK:         arith.mulf %x, %x

// -----

// A ternary-only model passes and is printed unchanged: accum is integer, also inside a kernel.
func.func @ternary_only(%x: tensor<?x8xf32>, %g: tensor<8xf32>, %w: !ternary.trits<6x8>, %p: !ternary.packed<6x8, "2bit">, %ws: f32) -> (tensor<?x6xf32>, tensor<?x6xi32>) {
  %n = ternary.rmsnorm %x, %g : tensor<?x8xf32>, tensor<8xf32>
  %q, %s = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<6x8> -> tensor<?x6xi32>
  %y = ternary.dequant %acc, %s, %ws : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
  %k = ternary.kernel grid [2] (%kq = %q : tensor<?x8xi8>, %kp = %p : !ternary.packed<6x8, "2bit"> tiled [0, *]) -> (tensor<?x6xi32> tiled [*, 0]) {
    %r = ternary.accum %kq, %kp : tensor<?x8xi8>, !ternary.packed<?x8, "2bit"> -> tensor<?x?xi32>
    ternary.yield %r : tensor<?x?xi32>
  }
  func.return %y, %k : tensor<?x6xf32>, tensor<?x6xi32>
}
// CHECK-LABEL: func.func @ternary_only(%x: tensor<?x8xf32>, %g: tensor<8xf32>, %w: !ternary.trits<6x8>, %p: !ternary.packed<6x8, "2bit">, %ws: f32) -> (tensor<?x6xf32>, tensor<?x6xi32>) {
// CHECK-NEXT:    %n = ternary.rmsnorm %x, %g : tensor<?x8xf32>, tensor<8xf32>
// CHECK-NEXT:    %q, %s = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
// CHECK-NEXT:    %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<6x8> -> tensor<?x6xi32>
// CHECK-NEXT:    %y = ternary.dequant %acc, %s, %ws : tensor<?x6xi32>, tensor<?x1xf32>, f32 -> tensor<?x6xf32>
// CHECK-NEXT:    %k = ternary.kernel grid [2] (%kq = %q : tensor<?x8xi8>, %kp = %p : !ternary.packed<6x8, "2bit"> tiled [0, *]) -> (tensor<?x6xi32> tiled [*, 0]) {
// CHECK-NEXT:      %r = ternary.accum %kq, %kp : tensor<?x8xi8>, !ternary.packed<?x8, "2bit"> -> tensor<?x?xi32>
// CHECK-NEXT:      ternary.yield %r : tensor<?x?xi32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y, %k : tensor<?x6xf32>, tensor<?x6xi32>
// CHECK-NEXT:  }
