// Helpers for the thin torch-side CUDA launchers (*_launch.cpp): torch scalar types to CUDA
// scalar types, raw pointers, and the choice of 32-bit index arithmetic.
//
// Uses the light c10/cuda headers (CUDAGuard, CUDAStream, CUDAException) rather than
// ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE/cuSOLVER headers the launchers do
// not need. c10::cuda::getCurrentCUDAStream is what at::cuda::getCurrentCUDAStream forwards to.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>
#include <limits>

#include "ops/block_indexing.h"

namespace segblocks {
namespace cuda {

// at::Half / at::BFloat16 have the same 16-bit storage as __half / __nv_bfloat16.
template <typename T>
struct CudaScalar {
  using type = T;
};
template <>
struct CudaScalar<at::Half> {
  using type = __half;
};
template <>
struct CudaScalar<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
const typename CudaScalar<T>::type* cuda_data(const at::Tensor& t) {
  return reinterpret_cast<const typename CudaScalar<T>::type*>(t.const_data_ptr<T>());
}

template <typename T>
typename CudaScalar<T>::type* cuda_mutable_data(at::Tensor& t) {
  return reinterpret_cast<typename CudaScalar<T>::type*>(t.mutable_data_ptr<T>());
}

// True if every element offset of every tensor, every element count and every grid-cell
// index fits in int32, so the kernels may use 32-bit index arithmetic with fast division.
inline bool fits_index32(std::initializer_list<at::Tensor> tensors, const BlockGrid& g) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (g.grid_n * g.grid_h * g.grid_w >= kMax) return false;
  for (const auto& t : tensors) {
    if (t.numel() >= kMax) return false;
    int64_t max_offset = 0;
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (t.size(d) > 0) max_offset += (t.size(d) - 1) * t.stride(d);
    }
    if (max_offset >= kMax) return false;
  }
  return true;
}

inline void check_cuda_tensor(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got device ", t.device());
}

}  // namespace cuda
}  // namespace segblocks
