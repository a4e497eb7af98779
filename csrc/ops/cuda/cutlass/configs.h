// The compiled CUTLASS convolution configurations, SEGBLOCKS_CUTLASS_CONFIG(name) each, in
// the order of their config index (segblocks_core.ops.cutlass_conv_configs()); the file
// conv_<name>.cu defines each (conv_cutlass.cuh). Names: tile MxNxK, pipeline stages (s0:
// as many as shared memory holds), and the persistent kernels' schedule.
// The first eight (CUTLASS's convolution kernel, one thread block per tile) were chosen
// from benchmarks/cutlass_conv_probe.py on the H100 (SwiftNet-RN18 units convolutions,
// batch 1 and 4): the fastest tile of each shape is among them. The persistent ones
// (ping-pong; cooperative with the stream-K scheduler) came after, since that kernel lost to
// cuDNN's persistent kernels by 10-25% at batch 4: of five probed
// (benchmarks/conv_config_probe.py, results/conv-config-probe-*), these three were the
// fastest CUTLASS configuration of some RN18 shape (64x256x64_s3 ping-pong and 128x64x64_s5
// stream-K never were).
SEGBLOCKS_CUTLASS_CONFIG(128x64x64_s4)
SEGBLOCKS_CUTLASS_CONFIG(128x64x64_s3)
SEGBLOCKS_CUTLASS_CONFIG(64x64x64_s4)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s4)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s0)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s0)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s3)
SEGBLOCKS_CUTLASS_CONFIG(64x256x64_s3)
SEGBLOCKS_CUTLASS_CONFIG(64x64x64_s6_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s4_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(128x128x64_s4_streamk)
SEGBLOCKS_CUTLASS_CONFIG(64x64x64_s0_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(64x128x64_s0_pingpong)
SEGBLOCKS_CUTLASS_CONFIG(128x64x64_s0_streamk)
