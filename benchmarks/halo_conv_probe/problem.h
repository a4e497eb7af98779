// The torch-free description of one halo-tile convolution (halo_conv.cuh), passed from the
// binding (binding.cpp) to the kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace halo_probe {

// padded [tiles, side+2, side+2, c] float16 (channels_last [tiles, c, side+2, side+2]),
// weight [n, 3, 3, c] (channels_last [n, c, 3, 3]), bias [n]; out and residual (nullptr:
// none): pixel (tile, y, x) at tile * strides[0] + y * strides[1] + x * strides[2] elements,
// channels contiguous. Stride 1. Gathered (the kGather configurations): padded is nullptr and
// the tiles come from source [rows, c] (the units' pixels, the 2x2 means, a zero row) through
// index [tiles, side+2, side+2] int32 (segblocks_core.halo); mean_rows [B, 4] int32 or
// nullptr (the source holds the means): the kernel makes source rows unit_rows .. zero_row - 1.
struct Problem {
  const void* padded;
  const void* source;
  const int* index;
  const int* mean_rows;
  int64_t unit_rows, zero_row;
  const void* weight;
  const void* bias;
  const void* residual;
  void* out;
  int tiles, side, c, n;
  int stride;  // 1, or 2: out and residual [T, N, side/2, side/2]
  int64_t out_strides[3], res_strides[3];
  int sm_count;
};

#define HALO_CONFIG(name, side, units, nb, stages, resident_b, tma_epilogue, prefetch_a, gather, stride) \
  int halo_conv_##name(const Problem& p, cudaStream_t stream);
#include "configs.inc"
#undef HALO_CONFIG

}  // namespace halo_probe
