// lower-to-accel: each kernel becomes one group: activation and parameter DMAs, the shared prologue
// (norm, quantize) once, then per tile a weight DMA into a double buffer, the accumulate and its
// dequantize, then a barrier and the results out. The tiler picks the tile size (any of 32, 16, 8 here).
// RUN: mmfc opt %s -p 'lower-to-accel{arch=edge-fpga}' | filecheck %s
// RUN: mmfc opt %s -p 'lower-to-accel{arch=edge-fpga}' | mmfc opt | filecheck %s
// RUN: not mmfc opt %s -p 'lower-to-accel{arch=no-such-design}' 2>&1 | filecheck %s --check-prefix=BADARCH

builtin.module {
  func.func @f(%x: tensor<?x64xf32>) -> tensor<?x32xf32> {
    %g = ternary.weight @g : tensor<64xf32>
    %w = ternary.weight @w : !ternary.packed<32x64, "2bit">
    %s = ternary.weight @s : f32
    %y = ternary.kernel grid [8] (%a = %x : tensor<?x64xf32>, %gg = %g : tensor<64xf32>, %ww = %w : !ternary.packed<32x64, "2bit"> tiled [0, *], %ss = %s : f32) -> (tensor<?x32xf32> tiled [*, 0]) attributes {label = "proj"} {
      %n = ternary.rmsnorm %a, %gg : tensor<?x64xf32>, tensor<64xf32>
      %q, %qs = ternary.quant_act %n : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>
      %acc = ternary.accum %q, %ww : tensor<?x64xi8>, !ternary.packed<?x64, "2bit"> -> tensor<?x?xi32>
      %r = ternary.dequant %acc, %qs, %ss : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
      ternary.yield %r : tensor<?x?xf32>
    }
    func.return %y : tensor<?x32xf32>
  }
}
// CHECK:      accel.program @f arch "edge-fpga" batch 1 seq 1 {
// CHECK-NEXT:   accel.group "proj" kernel 0 stream_axis 0 tile_rows [[N:[0-9]+]] act_bytes_per_row {{[0-9]+}} act_capacity_bytes {{[0-9]+}} {
// CHECK-NEXT:     %[[X:.*]] = accel.dma_in "act" per_row 256
// CHECK-NEXT:     %[[P:.*]] = accel.dma_in "param" bytes 260
// CHECK-NEXT:     %[[NORM:.*]] = accel.vector ["rmsnorm"] elements 64 body [0] after %[[X]], %[[P]]
// CHECK-NEXT:     %[[Q:.*]] = accel.quantize elements 64 body [1] after %[[NORM]]
// CHECK-NEXT:     %[[W0:.*]] = accel.dma_in "weight" @w rows 0 to [[N]] k 64 buffer 0
// CHECK-NEXT:     %[[A0:.*]] = accel.tacc @w rows 0 to [[N]] k 64 tile 0 body [2] after %[[Q]], %[[W0]]
// CHECK-NEXT:     %{{.*}} = accel.vector ["dequant"] elements [[N]] tile 0 body [3] after %[[P]], %[[Q]], %[[A0]]
// CHECK:          %[[B:.*]] = accel.barrier after
// CHECK-NEXT:     %{{.*}} = accel.dma_out "act" per_row 128 after %[[B]]
// CHECK-NEXT:   }
// CHECK-NEXT: }

// BADARCH: unknown accelerator 'no-such-design'
