// normalize_frames on the CPU: the element function of ops/normalize.h (shared with the
// CUDA kernel) in an at::parallel_for loop over pixels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"
#include "ops/normalize.h"

namespace segblocks {
namespace cpu {
namespace {

void normalize_frames_kernel(const at::Tensor& out, const at::Tensor& images, const at::Tensor& scale,
                             const at::Tensor& shift) {
  check_normalize_frames_args(out, images, scale, shift);
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "segblocks_normalize_frames_cpu", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      const NormalizeParams<scalar_t> prm{images.const_data_ptr<uint8_t>(), scale.const_data_ptr<float>(),
                                          shift.const_data_ptr<float>(), out.mutable_data_ptr<scalar_t>(),
                                          out.size(1)};
      for_each_pixel(images.numel() / 3, prm, &normalize_element<CpuCvt<scalar_t>, false>);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) { m.impl("normalize_frames_", &normalize_frames_kernel); }

}  // namespace cpu
}  // namespace segblocks
