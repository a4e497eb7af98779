// cell_complexity on CUDA: checks, device guard, current stream, launch of the torch-free
// kernel in complexity_kernel.cu, and the CUDA registration.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

at::Tensor cell_complexity_cuda(const at::Tensor& x, int64_t channels, int64_t factor, double floor) {
  check_cell_complexity_args(x, channels, factor);
  check_cuda_tensor("cell_complexity", "x", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor out = at::empty({x.size(0), x.size(2) / factor, x.size(3) / factor}, x.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  BlockGrid g{};  // for fits_index32: only the cell count matters
  const bool index32 = fits_index32({x, out}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segblocks_cell_complexity_cuda", [&] {
    C10_CUDA_CHECK(launch_cell_complexity(cuda_data<scalar_t>(x), strides_of(x), out.mutable_data_ptr<float>(),
                                          x.size(0), x.size(2), x.size(3), channels, factor,
                                          static_cast<float>(floor), index32, stream));
  });
  return out;
}

at::Tensor cell_complexity_frames_cuda(const at::Tensor& images, const at::Tensor& scale, const at::Tensor& shift,
                                       at::ScalarType dtype, int64_t factor, double floor) {
  check_cell_complexity_frames_args(images, scale, shift, dtype, factor);
  check_cuda_tensor("cell_complexity_frames", "images", images);
  const c10::cuda::CUDAGuard device_guard(images.device());
  const int64_t h = images.size(1), w = images.size(2);
  at::Tensor out = at::empty({images.size(0), h / factor, w / factor}, images.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  BlockGrid g{};  // for fits_index32: only the cell count matters (the frames' offsets are 64-bit)
  const bool index32 = fits_index32({out}, g);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segblocks_cell_complexity_frames_cuda", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      C10_CUDA_CHECK(launch_cell_complexity_frames<typename CudaScalar<scalar_t>::type>(
          images.const_data_ptr<uint8_t>(), scale.const_data_ptr<float>(), shift.const_data_ptr<float>(),
          out.mutable_data_ptr<float>(), images.size(0), h, w, factor, static_cast<float>(floor), index32, stream));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("cell_complexity", &cell_complexity_cuda);
  m.impl("cell_complexity_frames", &cell_complexity_frames_cuda);
}

}  // namespace cuda
}  // namespace segblocks
