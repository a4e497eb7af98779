// scale_shift_relu on CUDA: checks, device guard, current stream, launch of the torch-free
// kernel in scale_shift_relu_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

at::Tensor scale_shift_relu_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  check_scale_shift_relu_args(x, scale, shift);
  check_cuda_tensor("scale_shift_relu", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  if (out.numel() == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_scale_shift_relu_cuda", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      C10_CUDA_CHECK(launch_scale_shift_relu(cuda_data<scalar_t>(x), cuda_mutable_data<scalar_t>(out),
                                             cuda_data<scalar_t>(scale), cuda_data<scalar_t>(shift), x.numel(),
                                             x.size(1), stream));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) { m.impl("scale_shift_relu", &scale_shift_relu_cuda); }

}  // namespace cuda
}  // namespace segblocks
