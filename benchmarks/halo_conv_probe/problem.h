// The torch-free description of one halo-tile convolution (halo_conv.cuh), passed from the
// binding (binding.cpp) to the kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace halo_probe {

// padded [tiles, side+2, side+2, c] float16 (channels_last [tiles, c, side+2, side+2]),
// weight [n, 3, 3, c] (channels_last [n, c, 3, 3]), bias [n]; out and residual (nullptr:
// none): pixel (tile, y, x) at tile * strides[0] + y * strides[1] + x * strides[2] elements,
// channels contiguous. Stride 1.
struct Problem {
  const void* padded;
  const void* weight;
  const void* bias;
  const void* residual;
  void* out;
  int tiles, side, c, n;
  int64_t out_strides[3], res_strides[3];
  int sm_count;
};

#define HALO_CONFIG(name, side, units, nb, stages, resident_b, tma_epilogue, prefetch_a) int halo_conv_##name(const Problem& p, cudaStream_t stream);
#include "configs.inc"
#undef HALO_CONFIG

}  // namespace halo_probe
