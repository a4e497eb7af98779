// Scalar helpers for the torch-free CUDA kernels: accumulate type and conversions.
//
// torch's extension build passes -D__CUDA_NO_HALF_CONVERSIONS__ (and the bfloat16/operator
// variants) to nvcc, so half and bfloat16 are converted with the explicit intrinsics only;
// the Makefile's cuda-check passes the same flags so CI sees what the real build sees.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <utility>

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

// Programmatic dependent launch (Hopper, sm_90+): a kernel launched with
// launch_with_pdl may be scheduled before the kernel ahead of it in its stream has finished,
// so its launch and its thread blocks' start overlap that kernel's end. Every kernel
// launched that way calls pdl_wait() before it touches global memory: it returns once the
// grids it depends on have completed and their writes are visible, so nothing is read
// early and no buffer is overwritten while the kernel before still reads it. pdl_trigger()
// then lets the next such kernel be scheduled. Both are no-ops on older GPUs and for
// kernels launched without the attribute.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Whether launches on the current device use programmatic dependent launch: compute
// capability 9.0 or newer, unless the environment variable SEGBLOCKS_PDL is "0" (the A/B
// switch of benchmarks/bench_gpu.py --no-pdl). Read once per device.
inline bool pdl_enabled() {
  constexpr int kDevices = 64;
  static std::atomic<int> known[kDevices];  // 0: not read yet, 1: on, 2: off
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return false;
  int state = known[device].load(std::memory_order_relaxed);
  if (state == 0) {
    const char* env = std::getenv("SEGBLOCKS_PDL");
    int major = 0;
    const bool capable = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                         major >= 9;
    state = capable && !(env != nullptr && env[0] == '0' && env[1] == '\0') ? 1 : 2;
    known[device].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

// kernel<<<grid, block, smem, stream>>>(args...), with the programmatic-serialisation
// attribute where pdl_enabled(): the kernel must call pdl_wait() first.
template <typename... Params, typename... Args>
cudaError_t launch_with_pdl(void (*kernel)(Params...), unsigned int grid, unsigned int block, size_t smem,
                            cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(block);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace cuda
}  // namespace segblocks
