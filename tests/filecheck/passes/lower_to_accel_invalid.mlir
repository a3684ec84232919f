// lower-to-accel refuses unfused IR at the op, in one line.
// RUN: not mmfc opt %s -p 'lower-to-accel' 2>&1 | filecheck %s


func.func @g(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %y = ternary.sigmoid %x : tensor<?x64xf32>
  func.return %y : tensor<?x64xf32>
}
// CHECK: the accel lowering runs fused IR: ternary.sigmoid at function level (compile with -O2)
