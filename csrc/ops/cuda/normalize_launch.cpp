// normalize_frames on CUDA: checks, device guard, current stream, launch of the torch-free
// kernel in normalize_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

void normalize_frames_cuda(const at::Tensor& out, const at::Tensor& images, const at::Tensor& scale,
                           const at::Tensor& shift) {
  check_normalize_frames_args(out, images, scale, shift);
  check_cuda_tensor("normalize_frames_", "images", images);
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard device_guard(images.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor dst = out;  // shares out's storage
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "segblocks_normalize_frames_cuda", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      C10_CUDA_CHECK(launch_normalize_frames(images.const_data_ptr<uint8_t>(), scale.const_data_ptr<float>(),
                                             shift.const_data_ptr<float>(), cuda_mutable_data<scalar_t>(dst),
                                             images.numel() / 3, out.size(1), stream));
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) { m.impl("normalize_frames_", &normalize_frames_cuda); }

}  // namespace cuda
}  // namespace segblocks
