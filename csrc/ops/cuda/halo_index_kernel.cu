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
  const int64_t side = grid.hr_side / 2, w = side + 2;
  const int64_t tiles = 4 * grid.num_highres + grid.num_lowres;
  HaloIndexParams<D> prm{};
  prm.hr_pos = hr_pos;
  prm.lr_pos = lr_pos;
  prm.block_map = block_map;
  prm.g = GridIndexer<D>(grid);
  prm.index = index;
  prm.mean_rows = mean_rows;
  prm.side = static_cast<typename D::index_t>(side);
  prm.num_highres = static_cast<typename D::index_t>(grid.num_highres);
  prm.unit_rows = static_cast<typename D::index_t>(tiles * side * side);
  prm.zero_row = static_cast<typename D::index_t>(tiles * side * side + grid.num_lowres * (4 * side + 4));
  prm.tile_div = D(w * w);
  prm.width_div = D(w);
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
