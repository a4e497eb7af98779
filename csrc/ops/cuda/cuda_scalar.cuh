// Scalar helpers for the torch-free CUDA kernels: accumulate type and conversions.
//
// torch's extension build passes -D__CUDA_NO_HALF_CONVERSIONS__ (and the bfloat16/operator
// variants) to nvcc, so half and bfloat16 are converted with the explicit intrinsics only;
// the Makefile's cuda-check passes the same flags so CI sees what the real build sees.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace segblocks {
namespace cuda {

// Arithmetic in float for float/half/bfloat16 (as at::opmath_type), double for double.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename scalar_t>
using acc_type = typename AccType<scalar_t>::type;

__host__ __device__ __forceinline__ float to_acc(float v) { return v; }
__host__ __device__ __forceinline__ double to_acc(double v) { return v; }
__host__ __device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__host__ __device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename scalar_t>
__host__ __device__ __forceinline__ scalar_t from_acc(acc_type<scalar_t> v);
template <>
__host__ __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__host__ __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__host__ __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Grid-stride launches: enough blocks to fill any current GPU several times over, few
// enough that each thread loops a little (amortising its setup) on large maps.
constexpr int kThreadsPerBlock = 256;
inline unsigned int blocks_for(int64_t total) {
  const int64_t blocks = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  const int64_t max_blocks = int64_t(1) << 16;
  return static_cast<unsigned int>(blocks < max_blocks ? (blocks > 0 ? blocks : 1) : max_blocks);
}

}  // namespace cuda
}  // namespace segblocks
