// conv_into_: checks shared by the CPU kernel (ops/cpu/conv_into_kernel.cpp) and the CUDA
// one (ops/cuda/cutlass/conv_cutlass_launch.cpp, which adds what its kernel needs).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace segblocks {

// The output size [N, K, P, Q] of the convolution; every argument checked.
inline std::array<int64_t, 4> check_conv_into_args(const at::Tensor& out, const at::Tensor& x,
                                                   const at::Tensor& weight, const at::Tensor& bias,
                                                   const std::optional<at::Tensor>& residual, int64_t stride,
                                                   int64_t padding) {
  const char* op = "conv_into_";
  TORCH_CHECK(x.defined() && x.dim() == 4, op, ": x must be [N, C, H, W]");
  TORCH_CHECK(weight.defined() && weight.dim() == 4 && weight.size(1) == x.size(1), op,
              ": weight must be [K, C, R, S] with C = ", x.size(1), " input channels, got shape ",
              weight.defined() ? weight.sizes() : at::IntArrayRef{});
  TORCH_CHECK(bias.defined() && bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias must be [K] with K = ",
              weight.size(0));
  TORCH_CHECK(stride >= 1 && padding >= 0, op, ": stride must be >= 1 and padding >= 0, got ", stride, " and ",
              padding);
  const int64_t hp = x.size(2) + 2 * padding - weight.size(2), wp = x.size(3) + 2 * padding - weight.size(3);
  TORCH_CHECK(hp >= 0 && wp >= 0, op, ": the kernel ", weight.sizes().slice(2), " is larger than the padded input ",
              x.sizes().slice(2));
  const std::array<int64_t, 4> size{x.size(0), weight.size(0), hp / stride + 1, wp / stride + 1};
  TORCH_CHECK(out.defined() && out.sizes() == at::IntArrayRef(size), op, ": out must be ", at::IntArrayRef(size),
              ", got ", out.defined() ? out.sizes() : at::IntArrayRef{});
  if (residual.has_value()) {
    TORCH_CHECK(residual->sizes() == out.sizes(), op, ": residual must be ", out.sizes(), ", got ",
                residual->sizes());
  }
  for (const at::Tensor* t : {&weight, &bias, &out}) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), op, ": all tensors must have x's dtype ", x.scalar_type(),
                ", got ", t->scalar_type());
    TORCH_CHECK(t->device() == x.device(), op, ": all tensors must be on x's device ", x.device(), ", got ",
                t->device());
  }
  if (residual.has_value()) {
    TORCH_CHECK(residual->scalar_type() == x.scalar_type() && residual->device() == x.device(), op,
                ": residual must have x's dtype and device");
  }
  return size;
}

}  // namespace segblocks
