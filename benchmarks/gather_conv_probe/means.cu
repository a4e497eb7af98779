// The frames' 2x2 means of a halo source (segblocks_core.halo.halo_source), the only frame
// values a halo-gathering convolution needs written: one thread per mean row and 8 channels.
#include <cuda_fp16.h>

#include "problem.h"

namespace gather_probe {
namespace {

__global__ void halo_means_kernel(__half* source, const int* mean_rows, int means, int64_t unit_rows, int c) {
  const int packs = c / 8;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(means) * packs) return;
  const int b = int(i / packs), pack = int(i % packs);
  float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int q = 0; q < 4; ++q) {
    const uint4 v = *reinterpret_cast<const uint4*>(source + int64_t(mean_rows[4 * b + q]) * c + 8 * pack);
    const __half2* h = reinterpret_cast<const __half2*>(&v);
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(h[j]);
      sum[2 * j] += f.x;
      sum[2 * j + 1] += f.y;
    }
  }
  uint4 out;
  __half2* o = reinterpret_cast<__half2*>(&out);
  for (int j = 0; j < 4; ++j) o[j] = __floats2half2_rn(0.25f * sum[2 * j], 0.25f * sum[2 * j + 1]);
  *reinterpret_cast<uint4*>(source + (unit_rows + b) * c + 8 * pack) = out;
}

}  // namespace

void halo_means(void* source, const int* mean_rows, int means, int64_t unit_rows, int c, cudaStream_t stream) {
  const int64_t work = int64_t(means) * (c / 8);
  if (work == 0) return;
  const int threads = 256;
  halo_means_kernel<<<int((work + threads - 1) / threads), threads, 0, stream>>>(static_cast<__half*>(source),
                                                                                mean_rows, means, unit_rows, c);
}

}  // namespace gather_probe
