// The torch-free description of one conv_into_ problem, passed from the launcher
// (conv_cutlass_launch.cpp, compiled by the host compiler) to the CUTLASS kernels (.cu).
#pragma once

#include <cstddef>
#include <cstdint>

namespace segblocks {
namespace cuda {

// One problem: x [N, H, W, C] packed; w [K, R, S, C] packed; bias [K]; out and residual
// (nullptr: none) NHWC with channel stride 1 and element strides {n, h, w}; the device, its
// SM count (the persistent kernels' grid) and workspace_bytes of workspace (stream-K's
// partial sums; the launcher allocates what workspace_conv_cutlass_<name> asks for).
struct ConvCutlassProblem {
  const void* x;
  const void* weight;
  const void* bias;
  const void* residual;
  void* out;
  int n, h, w, c, k, r, s, stride, padding;
  int64_t out_strides[3];
  int64_t residual_strides[3];
  int device;
  int sm_count;
  void* workspace;
  size_t workspace_bytes;
};

}  // namespace cuda
}  // namespace segblocks
