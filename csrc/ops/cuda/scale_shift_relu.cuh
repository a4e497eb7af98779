// scale_shift_relu on the GPU: Params for the element function of ops/scale_shift_relu.h (one
// thread per 16-byte pack, grid-stride loop). The launcher is in scale_shift_relu_kernel.cu;
// test/cuda_kernels_host.cu runs the same element function on the CPU.
#pragma once

#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
#include "ops/scale_shift_relu.h"

namespace segblocks {
namespace cuda {

// x and out [elements / C, C] contiguous, 16-byte aligned, C a multiple of the 16-byte pack
// (the launcher checks).
template <typename scalar_t, typename Run>
void with_scale_shift_relu(const scalar_t* x, scalar_t* out, const scalar_t* scale, const scalar_t* shift,
                           int64_t elements, int64_t channels, Run&& run) {
  constexpr int kPack = PackWidth<scalar_t>::value;
  if (elements == 0) return;
  using Params = ScaleShiftReluParams<scalar_t>;
  const Params prm{x, out, scale, shift, channels};
  run.template operator()<Params, &scale_shift_relu_element<CudaCvt<scalar_t>, kPack>>(prm, elements / kPack);
}

}  // namespace cuda
}  // namespace segblocks
