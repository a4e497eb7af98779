// conv_into_ on the CPU: the reference (ATen's convolution, bias, residual and ReLU), copied
// into `out`'s view. The config argument names a CUDA kernel configuration and is ignored.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/conv_into.h"

namespace segblocks {
namespace cpu {
namespace {

void conv_into_kernel(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      const std::optional<at::Tensor>& residual, int64_t stride, int64_t padding, int64_t config) {
  check_conv_into_args(out, x, weight, bias, residual, stride, padding);
  TORCH_CHECK(config >= 0, "conv_into_: config must be >= 0, got ", config);
  at::Tensor y = at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
  if (residual.has_value()) y.add_(*residual);
  out.copy_(y.relu_());
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CPU, m) { m.impl("conv_into_", &conv_into_kernel); }

}  // namespace cpu
}  // namespace segblocks
