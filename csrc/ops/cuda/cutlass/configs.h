// The compiled CUTLASS convolution configurations, SEGBLOCKS_CUTLASS_CONFIG(M, N, K, STAGES)
// each, in the order of their config index (segblocks_core.ops.cutlass_conv_configs()).
// Chosen from benchmarks/cutlass_conv_probe.py on the H100 (SwiftNet-RN18 units
// convolutions, batch 1 and 4): the fastest tile of each shape is among these.
SEGBLOCKS_CUTLASS_CONFIG(128, 64, 64, 4)
SEGBLOCKS_CUTLASS_CONFIG(128, 64, 64, 3)
SEGBLOCKS_CUTLASS_CONFIG(64, 64, 64, 4)
SEGBLOCKS_CUTLASS_CONFIG(64, 128, 64, 4)
SEGBLOCKS_CUTLASS_CONFIG(64, 128, 64, 0)
SEGBLOCKS_CUTLASS_CONFIG(128, 128, 64, 0)
SEGBLOCKS_CUTLASS_CONFIG(128, 128, 64, 3)
SEGBLOCKS_CUTLASS_CONFIG(64, 256, 64, 3)
