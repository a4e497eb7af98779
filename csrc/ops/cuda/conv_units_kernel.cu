// conv3x3_units on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6): an
// implicit GEMM on the tensor cores (WMMA 16x16x16, float32 accumulation) around the
// per-thread pieces of ops/conv_units.h. One thread block per kConvBM x kConvBN output
// tile; per K step (one tap, kConvBK input channels) its 128 threads gather the A tile
// through BlockPad's rules and load the B tile into one stage of a kConvStages-deep
// shared-memory ring (cp.async for the plain copies, so kConvStages - 1 steps are in flight
// while one is multiplied), and each warp multiplies its 32 x 32 quarter. Instantiated for half and bfloat16.
#include <mma.h>

#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/conv_units.cuh"

namespace segblocks {
namespace cuda {
namespace {

template <typename scalar_t>
struct ConvSmem {
  static constexpr int tile_bytes = kConvBM * kConvPitch * static_cast<int>(sizeof(scalar_t));
  static constexpr int stage_bytes = 2 * tile_bytes;  // A then B
  static constexpr int c_bytes = kConvBM * kConvCPitch * 4;
  // the float32 output tile reuses the stages' memory after the K loop
  static constexpr int bytes = kConvStages * stage_bytes > c_bytes ? kConvStages * stage_bytes : c_bytes;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// 16 bytes global -> shared without passing through registers (sm_80+); L2 only (.cg).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(addr), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}
#endif

template <typename Cvt, typename D>
__global__ void __launch_bounds__(kConvThreads)
    conv_units_kernel(const __grid_constant__ ConvUnitsParams<typename Cvt::scalar_t, D> prm) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using scalar_t = typename Cvt::scalar_t;
  namespace wmma = nvcuda::wmma;
  using Smem = ConvSmem<scalar_t>;
  __shared__ __align__(128) unsigned char smem[Smem::bytes];
  const auto a_tile = [&](int stage) { return reinterpret_cast<scalar_t*>(smem + stage * Smem::stage_bytes); };
  const auto b_tile = [&](int stage) {
    return reinterpret_cast<scalar_t*>(smem + stage * Smem::stage_bytes + Smem::tile_bytes);
  };
  float* c_tile = reinterpret_cast<float*>(smem);

  const int t = static_cast<int>(threadIdx.x), warp = t / 32;
  const int64_t m_tile = blockIdx.x, n_tile = blockIdx.y, split = blockIdx.z;
  auto row = conv_units_row<Cvt, D>(prm, m_tile, t / 2);
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  const bool prologue = prm.pre_scale != nullptr;

  // this thread's share of step ks into a stage: plain copies asynchronously, the rest
  // (2x2 means, the prologue, the zero border) computed and stored
  const auto issue = [&](int64_t ks, int stage) {
    const ConvStep st = conv_step(ks, prm.cin);
    conv_units_locate(row, st);
#pragma unroll
    for (int p = 0; p < kConvPacksPerThread; ++p) {
      scalar_t* dst = a_tile(stage) + conv_tile_offset(t, p);
      const scalar_t* src = conv_units_a_copy_source(row, st, t, p, prologue);
      if (src != nullptr) {
        cp_async16(dst, src);
      } else {
        conv_units_a_compute(row, st, t, p, prm.pre_scale, prm.pre_shift, dst);
      }
      cp_async16(b_tile(stage) + conv_tile_offset(t, p), conv_units_b_source(prm, n_tile, st, t, p));
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  // this thread block's K steps: [first, last) of its split
  const ConvSteps range = conv_units_split_steps(prm, split);
  const int64_t first = range.first, steps = range.last - range.first;
  // steps 0 .. kConvStages - 2 in flight before the first multiply (one commit group per
  // step, empty past the end, so the wait below always counts the same)
#pragma unroll
  for (int s = 0; s < kConvStages - 1; ++s) {
    if (s < steps) issue(first + s, s);
    cp_async_commit();
  }
  for (int64_t ks = 0; ks < steps; ++ks) {
    cp_async_wait<kConvStages - 2>();  // step ks's copies (this thread's) have landed
    __syncthreads();                   // ... everyone's, and step ks - 1's stage is free
    const int64_t next = ks + kConvStages - 1;
    if (next < steps) issue(first + next, static_cast<int>(next % kConvStages));
    cp_async_commit();
    const int stage = static_cast<int>(ks % kConvStages);
    const scalar_t* a_s = a_tile(stage);
    const scalar_t* b_s = b_tile(stage);
#pragma unroll
    for (int kk = 0; kk < kConvBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, scalar_t, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, scalar_t, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], a_s + (wm + 16 * i) * kConvPitch + kk, kConvPitch);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], b_s + (wn + 16 * j) * kConvPitch + kk, kConvPitch);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every multiply done before the output tile overwrites the stages
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(c_tile + (wm + 16 * i) * kConvCPitch + wn + 16 * j, acc[i][j], kConvCPitch,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  conv_units_epilogue<Cvt, D>(prm, m_tile, n_tile, split, c_tile, t);
#else
  __trap();  // the launcher only runs on sm_80+
#endif
}

struct LaunchConvUnits {
  cudaStream_t stream;
  template <typename Cvt, typename D>
  void operator()(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t m_tiles, int64_t n_tiles) const {
    const dim3 grid(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles), static_cast<unsigned>(prm.splits));
    conv_units_kernel<Cvt, D><<<grid, kConvThreads, 0, stream>>>(prm);
    if (prm.splits > 1) {
      using Params = ConvUnitsParams<typename Cvt::scalar_t, D>;
      const int64_t total = prm.rows * (prm.cout / kConvPack);
      grid_stride_kernel<Params, &conv_units_reduce_element<Cvt, D>>
          <<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(prm, total);
    }
  }
};

}  // namespace

template <typename scalar_t>
cudaError_t launch_conv3x3_units(const scalar_t* highres, Strides4 highres_strides, const scalar_t* lowres,
                                 Strides4 lowres_strides, const int64_t* hr_pos, const int64_t* lr_pos,
                                 const int32_t* block_map, const BlockGrid& grid, const scalar_t* weight,
                                 const scalar_t* bias, const scalar_t* residual, scalar_t* out, int64_t cout,
                                 bool relu, bool quartered, int64_t stride, const scalar_t* pre_scale,
                                 const scalar_t* pre_shift, int64_t splits, float* partial, bool index32,
                                 cudaStream_t stream) {
  with_conv_units(highres, highres_strides, lowres, lowres_strides, hr_pos, lr_pos, block_map, grid, weight, bias,
                  residual, out, cout, relu, quartered, stride, pre_scale, pre_shift, splits, partial,
                  index32, LaunchConvUnits{stream});
  return cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_CONV_UNITS(T)                                                                        \
  template cudaError_t launch_conv3x3_units<T>(const T*, Strides4, const T*, Strides4, const int64_t*,           \
                                               const int64_t*, const int32_t*, const BlockGrid&, const T*, const T*, \
                                               const T*, T*, int64_t, bool, bool, int64_t, const T*, const T*, int64_t, \
                                               float*, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_CONV_UNITS(__half)
SEGBLOCKS_INSTANTIATE_CONV_UNITS(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_CONV_UNITS

}  // namespace cuda
}  // namespace segblocks
