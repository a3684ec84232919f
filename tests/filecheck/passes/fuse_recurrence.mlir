// fuse-recurrence: the MLGRU's gates (sigmoid, lower_bound, one_minus, silu_mul, mask) and its scan /
// scan_step become one kernel split over the channels (and batch), time whole -- inside the i/f/g
// projections' kernel when there is one (into-projections) -- and gate_norm moves into the o_proj
// kernel that alone reads it. gate_norm without such a kernel, or with other readers, stays.
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=4},fuse-recurrence{block-d=2}' | filecheck %s --check-prefix=FUSED
// RUN: mmfc opt %s --split-input-file -p 'fuse-recurrence{block-d=2}' | filecheck %s --check-prefix=ALONE
// RUN: mmfc opt %s --split-input-file -p 'fuse-bitlinear{block-n=4},fuse-recurrence{into-projections=false block-d=2 block-batch=3}' | filecheck %s --check-prefix=OWN
// RUN: not mmfc opt %s -p 'fuse-recurrence{block-d=-1}' 2>&1 | filecheck %s --check-prefix=BADOPT
// BADOPT: pass 'fuse-recurrence': block-d must be >= 1, got -1

// One MLGRU decode step (attn_norm applied by the caller): i/f/g projections, gates, scan_step,
// output gate, o_proj.
func.func @decode(%a: tensor<?x8xf32>, %h0: tensor<?x8xf32>, %lb: tensor<8xf32>, %ws: f32, %gamma: tensor<8xf32>, %wi: !ternary.trits<8x8>, %wf: !ternary.trits<8x8>, %wg: !ternary.trits<8x8>, %wo: !ternary.trits<8x8>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %in = ternary.rmsnorm %a, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %iq, %iqs = ternary.quant_act %in : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %iacc = ternary.accum %iq, %wi : tensor<?x8xi8>, !ternary.trits<8x8> -> tensor<?x8xi32>
  %i = ternary.dequant %iacc, %iqs, %ws : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  %fn = ternary.rmsnorm %a, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %fq, %fqs = ternary.quant_act %fn : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %facc = ternary.accum %fq, %wf : tensor<?x8xi8>, !ternary.trits<8x8> -> tensor<?x8xi32>
  %ft = ternary.dequant %facc, %fqs, %ws : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  %gn = ternary.rmsnorm %a, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %gq, %gqs = ternary.quant_act %gn : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %gacc = ternary.accum %gq, %wg : tensor<?x8xi8>, !ternary.trits<8x8> -> tensor<?x8xi32>
  %g = ternary.dequant %gacc, %gqs, %ws : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  %sig = ternary.sigmoid %ft : tensor<?x8xf32>
  %f = ternary.lower_bound %sig, %lb : tensor<?x8xf32>, tensor<8xf32>
  %omf = ternary.one_minus %f : tensor<?x8xf32>
  %ip = ternary.silu_mul %i, %omf : tensor<?x8xf32>
  %h = ternary.scan_step %ip, %f, %h0 : tensor<?x8xf32>
  %o = ternary.gate_norm %g, %h, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %on = ternary.rmsnorm %o, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %oq, %oqs = ternary.quant_act %on : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  %oacc = ternary.accum %oq, %wo : tensor<?x8xi8>, !ternary.trits<8x8> -> tensor<?x8xi32>
  %out = ternary.dequant %oacc, %oqs, %ws : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
  func.return %out, %h : tensor<?x8xf32>, tensor<?x8xf32>
}

// After fuse-bitlinear, the gates and the scan step move into the i/f/g kernel (i and f~ never leave
// it: it yields g and h, split over d like the projections), and the output gate into o_proj's kernel.
// FUSED-LABEL: func.func @decode
// FUSED-NEXT:    %g, %h = ternary.kernel grid [4] (%a_1 = %a : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %wi_1 = %wi : !ternary.trits<8x8> tiled [0, *], %ws_1 = %ws : f32, %wf_1 = %wf : !ternary.trits<8x8> tiled [0, *], %wg_1 = %wg : !ternary.trits<8x8> tiled [0, *], %lb_1 = %lb : tensor<8xf32> tiled [0], %h0_1 = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0], tensor<?x8xf32> tiled [*, 0]) {
// FUSED:           %g_1 = ternary.dequant %gacc, %gqs, %ws_1 : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
// FUSED-NEXT:      %sig = ternary.sigmoid %ft : tensor<?x?xf32>
// FUSED-NEXT:      %f = ternary.lower_bound %sig, %lb_1 : tensor<?x?xf32>, tensor<?xf32>
// FUSED-NEXT:      %omf = ternary.one_minus %f : tensor<?x?xf32>
// FUSED-NEXT:      %ip = ternary.silu_mul %i, %omf : tensor<?x?xf32>
// FUSED-NEXT:      %h_1 = ternary.scan_step %ip, %f, %h0_1 : tensor<?x?xf32>
// FUSED-NEXT:      ternary.yield %g_1, %h_1 : tensor<?x?xf32>, tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    %out = ternary.kernel grid [4] (%g_1 = %g : tensor<?x8xf32>, %h_1 = %h : tensor<?x8xf32>, %gamma_1 = %gamma : tensor<8xf32>, %wo_1 = %wo : !ternary.trits<8x8> tiled [0, *], %ws_1 = %ws : f32) -> (tensor<?x8xf32> tiled [*, 0]) {
// FUSED-NEXT:      %o = ternary.gate_norm %g_1, %h_1, %gamma_1 : tensor<?x8xf32>, tensor<8xf32>
// FUSED-NEXT:      %on = ternary.rmsnorm %o, %gamma_1 : tensor<?x8xf32>, tensor<8xf32>
// FUSED:           ternary.yield %out_1 : tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    func.return %out, %h : tensor<?x8xf32>, tensor<?x8xf32>

// Alone, the gates and the scan step become a kernel of their own over d; gate_norm stays.
// ALONE-LABEL: func.func @decode
// ALONE:         %g = ternary.dequant %gacc, %gqs, %ws : tensor<?x8xi32>, tensor<?x1xf32>, f32 -> tensor<?x8xf32>
// ALONE-NEXT:    %h = ternary.kernel grid [2] (%ft_1 = %ft : tensor<?x8xf32> tiled [*, 0], %lb_1 = %lb : tensor<8xf32> tiled [0], %i_1 = %i : tensor<?x8xf32> tiled [*, 0], %h0_1 = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) attributes {label = "recurrence"} {
// ALONE-NEXT:      %sig = ternary.sigmoid %ft_1 : tensor<?x?xf32>
// ALONE-NEXT:      %f = ternary.lower_bound %sig, %lb_1 : tensor<?x?xf32>, tensor<?xf32>
// ALONE-NEXT:      %omf = ternary.one_minus %f : tensor<?x?xf32>
// ALONE-NEXT:      %ip = ternary.silu_mul %i_1, %omf : tensor<?x?xf32>
// ALONE-NEXT:      %h_1 = ternary.scan_step %ip, %f, %h0_1 : tensor<?x?xf32>
// ALONE-NEXT:      ternary.yield %h_1 : tensor<?x?xf32>
// ALONE-NEXT:    }
// ALONE-NEXT:    %o = ternary.gate_norm %g, %h, %gamma : tensor<?x8xf32>, tensor<8xf32>
// ALONE-NEXT:    %on = ternary.rmsnorm %o, %gamma : tensor<?x8xf32>, tensor<8xf32>

// into-projections=false: a recurrence kernel between the projection kernels, here also split by batch.
// OWN-LABEL: func.func @decode
// OWN:         %i, %ft, %g = ternary.kernel grid [4]
// OWN:         %h = ternary.kernel grid [2, 3] (%ft_1 = %ft : tensor<?x8xf32> tiled [1, 0], %lb_1 = %lb : tensor<8xf32> tiled [0], %i_1 = %i : tensor<?x8xf32> tiled [1, 0], %h0_1 = %h0 : tensor<?x8xf32> tiled [1, 0]) -> (tensor<?x8xf32> tiled [1, 0]) attributes {label = "recurrence"} {
// OWN:         %out = ternary.kernel grid [4] (%g_1 = %g : tensor<?x8xf32>, %h_1 = %h : tensor<?x8xf32>,
// OWN-NEXT:      %o = ternary.gate_norm %g_1, %h_1, %gamma_1

// -----
// Prefill of the gates and the scan, with padding, inputs from outside (no projection kernel): the
// gates and the scan become one kernel of their own; the output gate has no kernel to go into.
func.func @prefill(%i: tensor<?x?x8xf32>, %ft: tensor<?x?x8xf32>, %g: tensor<?x?x8xf32>, %lb: tensor<8xf32>, %mask: tensor<?x?xi64>, %h0: tensor<?x8xf32>, %gamma: tensor<8xf32>) -> (tensor<?x?x8xf32>, tensor<?x8xf32>) {
  %sig = ternary.sigmoid %ft : tensor<?x?x8xf32>
  %f = ternary.lower_bound %sig, %lb : tensor<?x?x8xf32>, tensor<8xf32>
  %omf = ternary.one_minus %f : tensor<?x?x8xf32>
  %ip = ternary.silu_mul %i, %omf : tensor<?x?x8xf32>
  %ipm = ternary.mask %ip, %mask : tensor<?x?x8xf32>, tensor<?x?xi64>
  %h, %hT = ternary.scan %ipm, %f init %h0 : tensor<?x?x8xf32>, tensor<?x8xf32>
  %o = ternary.gate_norm %g, %h, %gamma : tensor<?x?x8xf32>, tensor<8xf32>
  func.return %o, %hT : tensor<?x?x8xf32>, tensor<?x8xf32>
}

// FUSED-LABEL: func.func @prefill
// FUSED-NEXT:    %h, %hT = ternary.kernel grid [2] (%ft_1 = %ft : tensor<?x?x8xf32> tiled [*, *, 0], %lb_1 = %lb : tensor<8xf32> tiled [0], %i_1 = %i : tensor<?x?x8xf32> tiled [*, *, 0], %mask_1 = %mask : tensor<?x?xi64>, %h0_1 = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x?x8xf32> tiled [*, *, 0], tensor<?x8xf32> tiled [*, 0]) attributes {label = "recurrence"} {
// FUSED-NEXT:      %sig = ternary.sigmoid %ft_1 : tensor<?x?x?xf32>
// FUSED-NEXT:      %f = ternary.lower_bound %sig, %lb_1 : tensor<?x?x?xf32>, tensor<?xf32>
// FUSED-NEXT:      %omf = ternary.one_minus %f : tensor<?x?x?xf32>
// FUSED-NEXT:      %ip = ternary.silu_mul %i_1, %omf : tensor<?x?x?xf32>
// FUSED-NEXT:      %ipm = ternary.mask %ip, %mask_1 : tensor<?x?x?xf32>, tensor<?x?xi64>
// FUSED-NEXT:      %h_1, %hT_1 = ternary.scan %ipm, %f init %h0_1 : tensor<?x?x?xf32>, tensor<?x?xf32>
// FUSED-NEXT:      ternary.yield %h_1, %hT_1 : tensor<?x?x?xf32>, tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    %o = ternary.gate_norm %g, %h, %gamma : tensor<?x?x8xf32>, tensor<8xf32>
// The time axis stays whole when the batch is split too.
// OWN-LABEL: func.func @prefill
// OWN-NEXT:    %h, %hT = ternary.kernel grid [2, 3] (%ft_1 = %ft : tensor<?x?x8xf32> tiled [1, *, 0], %lb_1 = %lb : tensor<8xf32> tiled [0], %i_1 = %i : tensor<?x?x8xf32> tiled [1, *, 0], %mask_1 = %mask : tensor<?x?xi64> tiled [1, *], %h0_1 = %h0 : tensor<?x8xf32> tiled [1, 0]) -> (tensor<?x?x8xf32> tiled [1, *, 0], tensor<?x8xf32> tiled [1, 0]) attributes {label = "recurrence"} {

// -----
// Left alone: a recurrence already in a kernel; a gate_norm whose only reader splits its rows (the norm
// needs them whole); a gate_norm read by a kernel and by the caller.
func.func @leave_alone(%x: tensor<?x8xf32>, %f: tensor<?x8xf32>, %h0: tensor<?x8xf32>, %g: tensor<?x8xf32>, %gamma: tensor<8xf32>, %wt: !ternary.trits<8x8>, %ws: f32) -> (tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>) {
  %h = ternary.kernel grid [4] (%a = %x : tensor<?x8xf32> tiled [*, 0], %b = %f : tensor<?x8xf32> tiled [*, 0], %c = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
    %r = ternary.scan_step %a, %b, %c : tensor<?x?xf32>
    ternary.yield %r : tensor<?x?xf32>
  }
  %o = ternary.gate_norm %g, %h, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %y = ternary.kernel grid [4] (%a = %o : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
    %s = ternary.silu %a : tensor<?x?xf32>
    ternary.yield %s : tensor<?x?xf32>
  }
  %o2 = ternary.gate_norm %h, %g, %gamma : tensor<?x8xf32>, tensor<8xf32>
  %y2 = ternary.kernel grid [4] (%a = %o2 : tensor<?x8xf32>, %b = %gamma : tensor<8xf32>, %w = %wt : !ternary.trits<8x8> tiled [0, *], %s = %ws : f32) -> (tensor<?x8xf32> tiled [*, 0]) {
    %n = ternary.rmsnorm %a, %b : tensor<?x8xf32>, tensor<8xf32>
    %q, %qs = ternary.quant_act %n : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
    %acc = ternary.accum %q, %w : tensor<?x8xi8>, !ternary.trits<?x8> -> tensor<?x?xi32>
    %r = ternary.dequant %acc, %qs, %s : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
    ternary.yield %r : tensor<?x?xf32>
  }
  func.return %h, %y, %y2, %o2 : tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>
}

// FUSED-LABEL: func.func @leave_alone
// FUSED-NEXT:    %h = ternary.kernel grid [4] (%a = %x : tensor<?x8xf32> tiled [*, 0], %b = %f : tensor<?x8xf32> tiled [*, 0], %c = %h0 : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
// FUSED-NEXT:      %r = ternary.scan_step %a, %b, %c : tensor<?x?xf32>
// FUSED-NEXT:      ternary.yield %r : tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    %o = ternary.gate_norm %g, %h, %gamma : tensor<?x8xf32>, tensor<8xf32>
// FUSED-NEXT:    %y = ternary.kernel grid [4] (%a = %o : tensor<?x8xf32> tiled [*, 0]) -> (tensor<?x8xf32> tiled [*, 0]) {
// FUSED-NEXT:      %s = ternary.silu %a : tensor<?x?xf32>
// FUSED-NEXT:      ternary.yield %s : tensor<?x?xf32>
// FUSED-NEXT:    }
// FUSED-NEXT:    %o2 = ternary.gate_norm %h, %g, %gamma : tensor<?x8xf32>, tensor<8xf32>
// FUSED-NEXT:    %y2 = ternary.kernel grid [4] (%a = %o2 : tensor<?x8xf32>, %b = %gamma : tensor<8xf32>, %w = %wt : !ternary.trits<8x8> tiled [0, *], %s = %ws : f32) -> (tensor<?x8xf32> tiled [*, 0]) {
// FUSED-NEXT:      %n = ternary.rmsnorm %a, %b : tensor<?x8xf32>, tensor<8xf32>

