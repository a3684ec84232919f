// The accel dialect round-trips (print, parse, print) through mmfc opt and plain xdsl-opt.
// RUN: mmfc opt %s | filecheck %s
// RUN: mmfc opt %s | mmfc opt | filecheck %s
// RUN: xdsl-opt %s | xdsl-opt | filecheck %s

accel.program @decode_step arch "edge-fpga" batch 1 seq 1 {
  accel.group "o_proj" kernel 2 stream_axis 0 tile_rows 64 act_bytes_per_row 3076 act_capacity_bytes 2080000 {
    %0 = accel.dma_in "act" per_row 1024
    %h = accel.dma_in "act" per_batch 512
    %1 = accel.dma_in "param" bytes 1028
    %2 = accel.vector ["gate_norm", "rmsnorm"] elements 256 body [0, 1] after %0, %1
    %3 = accel.quantize elements 256 body [2] after %2
    %4 = accel.dma_in "weight" @model.w rows 0 to 64 k 256 buffer 0
    %5 = accel.tacc @model.w rows 0 to 64 k 256 tile 0 body [3] after %3, %4
    %6 = accel.vector ["dequant"] elements 64 tile 0 body [4] after %5
    %7 = accel.scan_step elements 64 tile 0 after %6, %h
    %8 = accel.barrier after %6, %7
    %9 = accel.dma_out "act" per_row 1024 after %8
  }
}
// CHECK:      accel.program @decode_step arch "edge-fpga" batch 1 seq 1 {
// CHECK-NEXT:   accel.group "o_proj" kernel 2 stream_axis 0 tile_rows 64 act_bytes_per_row 3076 act_capacity_bytes 2080000 {
// CHECK-NEXT:     %0 = accel.dma_in "act" per_row 1024
// CHECK-NEXT:     %h = accel.dma_in "act" per_batch 512
// CHECK-NEXT:     %1 = accel.dma_in "param" bytes 1028
// CHECK-NEXT:     %2 = accel.vector ["gate_norm", "rmsnorm"] elements 256 body [0, 1] after %0, %1
// CHECK-NEXT:     %3 = accel.quantize elements 256 body [2] after %2
// CHECK-NEXT:     %4 = accel.dma_in "weight" @model.w rows 0 to 64 k 256 buffer 0
// CHECK-NEXT:     %5 = accel.tacc @model.w rows 0 to 64 k 256 tile 0 body [3] after %3, %4
// CHECK-NEXT:     %6 = accel.vector ["dequant"] elements 64 tile 0 body [4] after %5
// CHECK-NEXT:     %7 = accel.scan_step elements 64 tile 0 after %6, %h
// CHECK-NEXT:     %8 = accel.barrier after %6, %7
// CHECK-NEXT:     %9 = accel.dma_out "act" per_row 1024 after %8
