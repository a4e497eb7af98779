// scale_shift_relu on the CPU: the element function of ops/scale_shift_relu.h (shared with
// the CUDA kernel) in an at::parallel_for loop over 16-byte packs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cpu/block_copy.h"
#include "ops/scale_shift_relu.h"

namespace segblocks {
namespace cpu {
namespace {

at::Tensor scale_shift_relu_kernel(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  check_scale_shift_relu_args(x, scale, shift);
  at::Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_scale_shift_relu_cpu", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      constexpr int kPack = PackWidth<scalar_t>::value;
      const ScaleShiftReluParams<scalar_t> prm{x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                               scale.const_data_ptr<scalar_t>(), shift.const_data_ptr<scalar_t>(),
                                               x.size(1)};
      for_each_pixel(x.numel() / kPack, prm, &scale_shift_relu_element<CpuCvt<scalar_t>, kPack>);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) { m.impl("scale_shift_relu", &scale_shift_relu_kernel); }

}  // namespace cpu
}  // namespace segblocks
