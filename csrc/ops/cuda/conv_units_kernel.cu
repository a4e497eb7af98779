// conv3x3_units on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6): an
// implicit GEMM on the tensor cores (WMMA 16x16x16, float32 accumulation) around the
// per-thread pieces of ops/conv_units.h. One thread block per kConvBM x kConvBN output
// tile; per K step (one tap, kConvBK input channels) its 128 threads gather the A tile
// through BlockPad's rules and load the B tile (into registers while the previous step's
// tiles are multiplied, then into shared memory), and each warp multiplies its 32 x 32
// quarter. Instantiated for half and bfloat16.
#include <mma.h>

#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/conv_units.cuh"

namespace segblocks {
namespace cuda {
namespace {

template <typename scalar_t>
struct ConvSmem {
  static constexpr int tile_bytes = kConvBM * kConvPitch * static_cast<int>(sizeof(scalar_t));
  static constexpr int c_bytes = kConvBM * kConvCPitch * 4;
  // the float32 output tile reuses the A and B tiles' memory after the K loop
  static constexpr int bytes = 2 * tile_bytes > c_bytes ? 2 * tile_bytes : c_bytes;
};

template <typename Cvt, typename D>
__global__ void __launch_bounds__(kConvThreads)
    conv_units_kernel(const __grid_constant__ ConvUnitsParams<typename Cvt::scalar_t, D> prm) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using scalar_t = typename Cvt::scalar_t;
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(128) unsigned char smem[ConvSmem<scalar_t>::bytes];
  scalar_t* a_tile = reinterpret_cast<scalar_t*>(smem);
  scalar_t* b_tile = reinterpret_cast<scalar_t*>(smem + ConvSmem<scalar_t>::tile_bytes);
  float* c_tile = reinterpret_cast<float*>(smem);

  const int t = static_cast<int>(threadIdx.x), warp = t / 32;
  const int64_t m_tile = blockIdx.x, n_tile = blockIdx.y;
  auto row = conv_units_row<Cvt, D>(prm, m_tile, t / 2);
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  // register-staged pipeline: step ks + 1's loads are in flight while step ks multiplies
  const int64_t steps = 9 * prm.cin / kConvBK;
  ConvRegs<scalar_t> ra, rb;
  ConvStep st = conv_step(0, prm.cin);
  conv_units_fetch_a(row, st, t, ra, prm.pre_scale, prm.pre_shift);
  conv_units_fetch_b(prm, n_tile, st, t, rb);
  for (int64_t ks = 0; ks < steps; ++ks) {
    conv_units_store(ra, t, a_tile);
    conv_units_store(rb, t, b_tile);
    __syncthreads();
    if (ks + 1 < steps) {
      st = conv_step(ks + 1, prm.cin);
      conv_units_fetch_a(row, st, t, ra, prm.pre_scale, prm.pre_shift);
      conv_units_fetch_b(prm, n_tile, st, t, rb);
    }
#pragma unroll
    for (int kk = 0; kk < kConvBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, scalar_t, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, scalar_t, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], a_tile + (wm + 16 * i) * kConvPitch + kk, kConvPitch);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], b_tile + (wn + 16 * j) * kConvPitch + kk, kConvPitch);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(c_tile + (wm + 16 * i) * kConvCPitch + wn + 16 * j, acc[i][j], kConvCPitch,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  conv_units_epilogue<Cvt, D>(prm, m_tile, n_tile, c_tile, t);
#else
  __trap();  // the launcher only runs on sm_80+
#endif
}

struct LaunchConvUnits {
  cudaStream_t stream;
  template <typename Cvt, typename D>
  void operator()(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t m_tiles, int64_t n_tiles) const {
    conv_units_kernel<Cvt, D><<<dim3(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles)), kConvThreads, 0,
                                stream>>>(prm);
  }
};

}  // namespace

template <typename scalar_t>
cudaError_t launch_conv3x3_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                 Strides4 lowres_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                                 const int32_t* block_map, const BlockGrid& grid, const scalar_t* weight,
                                 const scalar_t* bias, const scalar_t* residual, scalar_t* out, int64_t cout,
                                 bool relu, bool quartered, int64_t stride, const scalar_t* pre_scale,
                                 const scalar_t* pre_shift, bool index32, cudaStream_t stream) {
  with_conv_units(highres, highres_strides, lowres, lowres_strides, hr_pos, lr_pos, block_map, grid, weight, bias,
                  residual, out, cout, relu, quartered, stride, pre_scale, pre_shift, index32,
                  LaunchConvUnits{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_CONV_UNITS(T)                                                                        \
  template cudaError_t launch_conv3x3_units<T>(const T*, Strides4, const T*, Strides4, const int64_t*,           \
                                               const int64_t*, const int32_t*, const BlockGrid&, const T*, const T*, \
                                               const T*, T*, int64_t, bool, bool, int64_t, const T*, const T*, bool, \
                                               cudaStream_t);

SEGBLOCKS_INSTANTIATE_CONV_UNITS(__half)
SEGBLOCKS_INSTANTIATE_CONV_UNITS(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_CONV_UNITS

}  // namespace cuda
}  // namespace segblocks
