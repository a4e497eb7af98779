// halo_index on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6): one
// thread per index entry (ops/halo_index.h), grid-stride, on the caller's stream; 32-bit
// index arithmetic with fast division where everything fits.
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/halo_index.h"

namespace segblocks {
namespace cuda {

namespace {

template <typename D>
void run_halo_index(const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map, const BlockGrid& grid,
                    int32_t* index, int32_t* mean_rows, cudaStream_t stream) {
  const int64_t w = grid.hr_side / 2 + 2, tiles = 4 * grid.num_highres + grid.num_lowres;
  const auto prm = make_halo_index_params<D>(hr_pos, lr_pos, block_map, grid, index, mean_rows);
  LaunchOnStream{stream}.template operator()<HaloIndexParams<D>, &halo_index_element<D>>(prm, tiles * w * w);
}

}  // namespace

cudaError_t launch_halo_index(const int64_t* hr_pos, const int64_t* lr_pos, const int32_t* block_map,
                              const BlockGrid& grid, int32_t* index, int32_t* mean_rows, bool index32,
                              cudaStream_t stream) {
  if (index32) {
    run_halo_index<FastDivider>(hr_pos, lr_pos, block_map, grid, index, mean_rows, stream);
  } else {
    run_halo_index<PlainDivider<int64_t>>(hr_pos, lr_pos, block_map, grid, index, mean_rows, stream);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace segblocks
