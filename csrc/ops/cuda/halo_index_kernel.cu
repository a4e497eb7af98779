// halo_index and halo_means_ on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md
// section 6): one thread per index entry, or per 16-byte pack of a written source row
// (ops/halo_index.h), grid-stride, on the caller's stream; the index with 32-bit arithmetic
// and fast division where everything fits.
#include "ops/cuda/block_copy.cuh"
#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/upsample_argmax.cuh"  // CudaCvt
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

template <typename scalar_t>
cudaError_t launch_halo_means(scalar_t* source, const int32_t* mean_rows, int64_t channels, int64_t unit_rows,
                              int64_t num_means, bool packed, cudaStream_t stream) {
  constexpr int kPack = PackWidth<scalar_t>::value;
  const HaloMeansParams<scalar_t> prm{source, mean_rows, channels, unit_rows, num_means};
  const int64_t elements = (num_means + 1) * channels;
  if (packed) {
    LaunchOnStream{stream}.template operator()<HaloMeansParams<scalar_t>,
                                               &halo_means_element<CudaCvt<scalar_t>, kPack>>(prm, elements / kPack);
  } else {
    LaunchOnStream{stream}.template operator()<HaloMeansParams<scalar_t>, &halo_means_element<CudaCvt<scalar_t>, 1>>(
        prm, elements);
  }
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_HALO_MEANS(T) \
  template cudaError_t launch_halo_means<T>(T*, const int32_t*, int64_t, int64_t, int64_t, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_HALO_MEANS(float)
SEGBLOCKS_INSTANTIATE_HALO_MEANS(__half)
SEGBLOCKS_INSTANTIATE_HALO_MEANS(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_HALO_MEANS

}  // namespace cuda
}  // namespace segblocks
