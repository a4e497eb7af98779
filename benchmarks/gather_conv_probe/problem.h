// The torch-free description of one halo-gathering convolution (gather_conv.cuh), passed
// from the binding (binding.cpp) to the kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gather_probe {

// source [rows, c] float16, index [tiles, (si+2)^2] int32 (si = side * stride), weight
// [n, 3, 3, c] (channels_last [n, c, 3, 3]), bias [n]; out and residual (nullptr: none)
// [m, n] rows of out_ld / residual_ld elements, m = tiles * side * side. side: the output
// units' side (a power of two); stride 1 or 2. mean_rows [means, 4] int32 (nullptr: the
// source already holds the means, halo_means ran): the producers make the frames' 2x2
// means of source rows unit_rows .. zero_row - 1 themselves.
struct Problem {
  const void* source;
  const int* index;
  const int* mean_rows;
  int64_t unit_rows, zero_row;
  const void* weight;
  const void* bias;
  const void* residual;
  void* out;
  int tiles, side, stride, c, n;
  int64_t out_ld, residual_ld;
  int sm_count;
};

#define GATHER_CONFIG(name, m, n, k, load_groups, pingpong, cooperative) int gather_conv_##name(const Problem& p, cudaStream_t stream);
#include "configs.inc"
#undef GATHER_CONFIG

// source[unit_rows + b, :] = the mean of source[mean_rows[b, 0..3], :] (float sum, rounded once)
void halo_means(void* source, const int* mean_rows, int means, int64_t unit_rows, int c, cudaStream_t stream);

}  // namespace gather_probe
