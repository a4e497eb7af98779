// The compiled CUTLASS convolution configurations, SEGBLOCKS_CUTLASS_CONFIG(name) each, in
// the order of their config index (segblocks_core.ops.cutlass_conv_configs()); the file
// conv_<name>.cu defines each (conv_cutlass.cuh, conv_cutlass_persistent.cuh). Names: tile
// MxNxK, pipeline stages (s0: as many as shared memory holds), and the persistent kernels'
// schedule (ping-pong; cooperative with the stream-K scheduler; cooperative, "coop"). Kept from
// benchmarks/conv_config_probe.py on the H100 (results/conv-config-probe-*: 13 and then 14
// configurations against cuDNN on SwiftNet-RN18's 3x3 convolutions, units at 40% and dense,
// batch 1 and 4): each was the fastest CUTLASS configuration of some shape there, or often
// picked by the bench's timed choices; fewer configurations also time faster at capture.
SEGBLOCKS_CUTLASS_CONFIG(128x64x64_s4)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s4)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s0)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s0)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s4_streamk)
SEGBLOCKS_CUTLASS_CONFIG(64x64x64_s0_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s0_pingpong)
// the 256-row cooperative tiles: cuDNN's choice for the static best's 64-channel layer 1 (256x64)
// and some deep layers (node profiles, steps/60-*); not yet in the probe's results
SEGBLOCKS_CUTLASS_CONFIG(256x64x64_s0_coop)
SEGBLOCKS_CUTLASS_CONFIG(256x128x64_s0_coop)
// clustered persistent tiles (TMA multicast of the shared operand within a cluster), written for
// the deep layers' units at batch 1 (few output tiles, long K loops). On the H200 none is the
// fastest way of any of those shapes (steps/68-cluster-conv-config-probe-*); the timed choices
// still pick them for about 40 of the bench's 560 (steps/68-cluster-ab-*)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s0_c2x1_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(64x64x64_s0_c2x2_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s0_c2x1_coop)
// halo-tile convolutions (conv_halo.cuh; not CUTLASS's kernels, its cute wrappers of wgmma and
// TMA): 3x3 stride 1 only, C and K multiples of 64 (the "_rb" one C = K = 64); they reject the
// other problems (step 1). From benchmarks/halo_conv_probe.py: faster than every CUTLASS
// configuration on SwiftNet's 64-channel layer 1 units (steps/83-*, steps/86-*)
SEGBLOCKS_CUTLASS_CONFIG(halo_s16_n64)
SEGBLOCKS_CUTLASS_CONFIG(halo_s16_n64_rb_pf)
