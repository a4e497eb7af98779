// Programmatic dependent launch (PDL, compute capability 9.0+): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may start while the kernel before it on
// the stream is still running, once every thread block of that one has run
// griddepcontrol.launch_dependents (or exited). Its thread blocks then wait in
// griddepcontrol.wait until that kernel has finished and its writes are visible. What it saves
// is the launch of the second kernel (its blocks are resident when the first one ends), which
// at batch 1 is a large part of the short SegBlocks passes between the convolutions; CUDA
// graphs keep it (stream capture turns the attribute into a programmatic edge).
//
// The contract, for every kernel launched with the attribute: no global memory access (read or
// write) before wait_for_prerequisite_grid(). Our grid-stride kernels wait first thing; the
// CUTLASS GEMM kernels (the persistent convolutions) wait in each warp role before touching
// global memory when built with CUTLASS_ENABLE_GDC_FOR_SM90. Kernels that do not wait (cuDNN's,
// PyTorch's, CUTLASS's convolution kernel) are launched the ordinary way; as the kernel
// *before* a programmatic launch they are harmless: a kernel that never runs launch_dependents
// lets its dependant start only when it exits.
//
// SEGBLOCKS_PDL=0 in the environment launches every kernel the ordinary way (read once per
// process and extension module; the A/B baseline).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace segblocks {
namespace cuda {

#ifdef __CUDACC__
// Blocks until the kernel this one programmatically depends on has finished and its memory
// is visible; a no-op for a kernel launched the ordinary way and below sm_90.
__device__ __forceinline__ void wait_for_prerequisite_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel on the stream (if launched programmatically) start once every block of
// this one has run it; its blocks still wait for this kernel's end before touching memory.
__device__ __forceinline__ void allow_dependent_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif  // __CUDACC__

// An environment switch: unset `fallback`, "0" off, anything else on.
inline bool env_switch(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strcmp(v, "0") != 0;
}

// SEGBLOCKS_PDL: on unless "0" (read once).
inline bool programmatic_launch_requested() {
  static const bool on = env_switch("SEGBLOCKS_PDL", true);
  return on;
}

// Programmatic launches on the current device: requested and compute capability >= 9.0
// (cached per device; below 9.0 the kernels above have no wait, so they must not be
// launched early).
inline bool programmatic_launch_enabled() {
  if (!programmatic_launch_requested()) return false;
  constexpr int kMaxDevices = 64;
  static std::atomic<int> major[kMaxDevices] = {};  // 0: not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
    cudaGetLastError();  // not sticky: clear it for the launcher's check
    return false;
  }
  int m = major[device].load(std::memory_order_relaxed);
  if (m == 0) {
    if (cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    major[device].store(m, std::memory_order_relaxed);
  }
  return m >= 9;
}

// Two-phase elements (located_grid_stride_kernel, block_copy.cuh: the BlockPad passes) do
// their lookups before the wait, with programmatic launches on; SEGBLOCKS_PDL_PREFETCH=0 turns
// it off (read once). On by default since its GPU parity run (every parity case and the CUDA
// tests on an H100, benchmarks/results/parity-*-2026-11-27.json) and A/Bs in which it was
// never slower (benchmarks/results/steps/66-*, 69-*).
inline bool programmatic_prefetch_enabled() {
  static const bool requested = env_switch("SEGBLOCKS_PDL_PREFETCH", true);
  return requested && programmatic_launch_enabled();
}

// Launches kernel<<<grid, block, 0, stream>>>(args...), programmatically where enabled. A
// launch error is left for the caller's cudaGetLastError() check, like <<<>>>'s.
template <typename... KernelArgs, typename... Args>
void launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = programmatic_launch_enabled() ? 1 : 0;
  cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace cuda
}  // namespace segblocks
