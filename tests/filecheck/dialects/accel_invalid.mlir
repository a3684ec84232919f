// The accel verifiers: one line naming the op and what is wrong.
// RUN: xdsl-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

accel.program @f arch "x" batch 1 seq 1 {
  accel.group "g" kernel 0 stream_axis 0 tile_rows 8 act_bytes_per_row 4 act_capacity_bytes 64 {
    %0 = accel.dma_in "weights" bytes 4
  }
}
// CHECK: accel.dma_in: payload must be one of weight, act, param, table, got 'weights'

// -----

accel.program @f arch "x" batch 1 seq 1 {
  accel.group "g" kernel 0 stream_axis 0 tile_rows 8 act_bytes_per_row 4 act_capacity_bytes 64 {
    %0 = accel.tacc @w rows 8 to 8 k 16 tile 0
  }
}
// CHECK: accel.tacc: rows 8 to 8 is empty or negative

// -----

accel.program @f arch "x" batch 1 seq 1 {
  accel.group "g" kernel 0 stream_axis 0 tile_rows 8 act_bytes_per_row 4 act_capacity_bytes 64 {
    %0 = accel.vector ["softmax"] elements 16
  }
}
// CHECK: accel.vector: unknown op kind 'softmax'

// -----

accel.program @f arch "x" batch 1 seq 1 {
  accel.group "g" kernel 0 stream_axis 0 tile_rows 0 act_bytes_per_row 4 act_capacity_bytes 64 {
    %0 = accel.dma_in "act" per_row 4
  }
}
// CHECK: accel.group: tile_rows must be >= 1, got 0
