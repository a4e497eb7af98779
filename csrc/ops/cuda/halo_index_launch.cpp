// halo_index and halo_means_ on CUDA: checks, device guard, current stream, launch of the
// torch-free kernels in halo_index_kernel.cu, and the CUDA registration. No host
// synchronisation: the layout's and the mean rows' values are not checked here (the CPU kernels
// check them; on CUDA that would read them back).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "ops/block_checks.h"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/cuda_launch.h"

namespace segblocks {
namespace cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> halo_index_cuda(const at::Tensor& hr_pos, const at::Tensor& lr_pos,
                                                   const at::Tensor& block_map, int64_t side) {
  const BlockGrid g = check_halo_index_args(hr_pos, lr_pos, block_map, side);
  check_cuda_tensor("halo_index", "hr_pos", hr_pos);
  const c10::cuda::CUDAGuard device_guard(hr_pos.device());
  auto [index, mean_rows] = empty_halo_index(hr_pos, g);
  if (index.numel() == 0) return {index, mean_rows};
  const at::Tensor hr_p = hr_pos.contiguous(), lr_p = lr_pos.contiguous(), bm = block_map.contiguous();
  // the checks bound every row and entry by int32; the grid's cells too
  const bool index32 = g.grid_n * g.grid_h * g.grid_w < int64_t(2147483647);
  C10_CUDA_CHECK(launch_halo_index(hr_p.const_data_ptr<int64_t>(), lr_p.const_data_ptr<int64_t>(),
                                   bm.const_data_ptr<int32_t>(), g, index.mutable_data_ptr<int32_t>(),
                                   mean_rows.mutable_data_ptr<int32_t>(), index32,
                                   c10::cuda::getCurrentCUDAStream()));
  return {index, mean_rows};
}

void halo_means_cuda(const at::Tensor& source, const at::Tensor& mean_rows, int64_t unit_rows) {
  check_halo_means_args(source, mean_rows, unit_rows);
  check_cuda_tensor("halo_means_", "source", source);
  if (source.size(1) == 0) return;
  const c10::cuda::CUDAGuard device_guard(source.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, source.scalar_type(), "segblocks_halo_means_cuda", [&] {
    TORCH_CHECK((!std::is_same_v<scalar_t, double>), "halo_means_: float64 is CPU-only");
    if constexpr (!std::is_same_v<scalar_t, double>) {
      const bool packed = (source.size(1) * int64_t(sizeof(scalar_t))) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(source.data_ptr()) % 16 == 0;
      at::Tensor out = source;  // the same storage: written in place
      C10_CUDA_CHECK(launch_halo_means(cuda_mutable_data<scalar_t>(out),
                                       mean_rows.const_data_ptr<int32_t>(), source.size(1), unit_rows,
                                       mean_rows.size(0), packed, stream));
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(segblocks, CUDA, m) {
  m.impl("halo_index", &halo_index_cuda);
  m.impl("halo_means_", &halo_means_cuda);
}

}  // namespace cuda
}  // namespace segblocks
