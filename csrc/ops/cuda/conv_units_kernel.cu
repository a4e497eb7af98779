// conv3x3_units on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6): an
// implicit GEMM on the tensor cores (ldmatrix + mma.sync m16n8k16, float32 accumulation)
// around the per-thread pieces of ops/conv_units.h. One thread block per kConvBM x kConvBN
// output tile (and K split). It looks up where each pixel of its halo tile comes from
// once (a table in shared memory); then, per chunk of kConvBK input channels, its 128
// threads stage the halo tile (cp.async for plain copies, BlockPad's 2x2 means, the
// prologue and the zero border computed), two buffers deep, and per K step (one tap of a
// chunk) load the B tile into a kConvStages-deep ring, so kConvStages - 1 steps are in
// flight while one is multiplied. Each warp multiplies its 32 x 32 quarter, reading A rows
// straight out of the halo tile at the tap's offset. Instantiated for half and bfloat16.
#include <type_traits>

#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/conv_units.cuh"

namespace segblocks {
namespace cuda {
namespace {

__host__ __device__ constexpr int64_t align128(int64_t bytes) { return (bytes + 127) / 128 * 128; }

// Dynamic shared memory of a thread block, in bytes from its start: the source table, two
// halo tiles, the B ring; the float32 output tile reuses the halo tiles and the ring
// after the K loop.
struct ConvSmemLayout {
  int64_t halo, halo_bytes, b, b_bytes, total;
};

template <typename scalar_t, typename index_t>
__host__ __device__ ConvSmemLayout conv_smem_layout(int64_t halo_pixels) {
  ConvSmemLayout l{};
  l.halo = align128(halo_pixels * static_cast<int64_t>(sizeof(PadSource<index_t>)));
  l.halo_bytes = align128(halo_pixels * kConvPitch * static_cast<int64_t>(sizeof(scalar_t)));
  l.b = l.halo + 2 * l.halo_bytes;
  l.b_bytes = kConvBN * kConvPitch * static_cast<int64_t>(sizeof(scalar_t));
  const int64_t c_end = l.halo + kConvBM * kConvCPitch * 4;
  const int64_t b_end = l.b + kConvStages * l.b_bytes;
  l.total = b_end > c_end ? b_end : c_end;
  return l;
}

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

// Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a (16x16, row major) * b (16x8, column major), float32 sums.
template <typename scalar_t>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<scalar_t, __half>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
#endif

template <typename Cvt, typename D>
__global__ void __launch_bounds__(kConvThreads)
    conv_units_kernel(const __grid_constant__ ConvUnitsParams<typename Cvt::scalar_t, D> prm) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using scalar_t = typename Cvt::scalar_t;
  using index_t = typename D::index_t;
  using Src = PadSource<index_t>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int halo_pixels = static_cast<int>(prm.tiling.halo_pixels);
  const ConvSmemLayout lay = conv_smem_layout<scalar_t, index_t>(halo_pixels);
  Src* table = reinterpret_cast<Src*>(smem);
  const auto halo = [&](int64_t chunk) {
    return reinterpret_cast<scalar_t*>(smem + lay.halo + (chunk & 1) * lay.halo_bytes);
  };
  const auto b_tile = [&](int stage) { return reinterpret_cast<scalar_t*>(smem + lay.b + stage * lay.b_bytes); };
  float* c_tile = reinterpret_cast<float*>(smem + lay.halo);

  const int t = static_cast<int>(threadIdx.x), warp = t / 32, lane = t % 32;
  const int64_t m_tile = blockIdx.x, n_tile = blockIdx.y, split = blockIdx.z;
  for (int hp = t; hp < halo_pixels; hp += kConvThreads) table[hp] = conv_halo_source<Cvt, D>(prm, m_tile, hp);
  ConvHaloGather<Cvt, D> gather(prm);
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  // ldmatrix rows of this lane: A (matrix_a of rows wm + 16 i .. + 16): row lane % 16 at
  // channel offset (lane / 16) * 8, as the halo pixel of its window's top left; B (two
  // n8 x k16 fragments per x4): output channel (lane % 8) + (lane / 16) * 8, offset
  // ((lane / 8) % 2) * 8
  int a_row[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    a_row[i] = static_cast<int>(conv_tile_row(prm.tiling, m_tile, wm + 16 * i + (lane & 15)).halo) * kConvPitch +
               (lane >> 4) * 8;
  }
  const int b_row = (wn + (lane & 7) + (lane >> 4) * 8) * kConvPitch + ((lane >> 3) & 1) * 8;
  __syncthreads();  // the table

  // chunk st.chunk's halo tile: plain copies asynchronously, the rest computed and stored
  const auto gather_halo = [&](const ConvStep& st) {
    scalar_t* tile = halo(st.chunk);
    for (int e = t; e < halo_pixels * kConvPacksPerPixel; e += kConvThreads) {
      const int hp = e / kConvPacksPerPixel, p = e % kConvPacksPerPixel;
      const int64_t c = st.c0 + p * kConvPack;
      scalar_t* dst = tile + hp * kConvPitch + p * kConvPack;
      const Src src = table[hp];
      const scalar_t* g = gather.copy_source(src, c);
      if (g != nullptr) {
        cp_async16(dst, g);
      } else {
        gather.compute(src, c, dst);
      }
    }
  };
  const auto issue = [&](int64_t ks, int stage) {
    const ConvStep st = conv_step(ks);
    if (st.tap == 0) gather_halo(st);
#pragma unroll
    for (int p = 0; p < kConvPacksPerThread; ++p) {
      cp_async16(b_tile(stage) + conv_tile_offset(t, p), conv_units_b_source(prm, n_tile, st, t, p));
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int l = 0; l < 4; ++l) acc[i][j][l] = 0.0f;
    }
  }
  // this thread block's K steps: [first, last) of its split (whole chunks)
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
    const ConvStep st = conv_step(first + ks);
    const scalar_t* a_s = halo(st.chunk) + conv_tap_offset(prm.tiling, st.dy, st.dx) * kConvPitch;
    const scalar_t* b_s = b_tile(static_cast<int>(ks % kConvStages));
#pragma unroll
    for (int kk = 0; kk < kConvBK; kk += 16) {
      uint32_t a[2][4], b[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i) ldmatrix_x4(a[i], a_s + a_row[i] + kk);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) ldmatrix_x4(b[jj], b_s + b_row + jj * 16 * kConvPitch + kk);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) mma16816<scalar_t>(acc[i][j], a[i], b[j >> 1][(j & 1) * 2], b[j >> 1][(j & 1) * 2 + 1]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every multiply done before the output tile overwrites the halo tiles
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float* c = c_tile + (wm + 16 * i + g) * kConvCPitch + wn + 8 * j + 2 * q;
      c[0] = acc[i][j][0];
      c[1] = acc[i][j][1];
      c[8 * kConvCPitch] = acc[i][j][2];
      c[8 * kConvCPitch + 1] = acc[i][j][3];
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
  cudaError_t* status;
  template <typename Cvt, typename D>
  void operator()(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm, int64_t n_tiles) const {
    using scalar_t = typename Cvt::scalar_t;
    const auto kernel = conv_units_kernel<Cvt, D>;
    const int64_t bytes = conv_smem_layout<scalar_t, typename D::index_t>(prm.tiling.halo_pixels).total;
    // above the default 48 KB a kernel has to ask for its dynamic shared memory (per device:
    // asked at every such launch, a host-side call)
    if (bytes > 48 * 1024) {
      *status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
      if (*status != cudaSuccess) return;
    }
    const dim3 grid(static_cast<unsigned>(prm.tiling.m_tiles), static_cast<unsigned>(n_tiles),
                    static_cast<unsigned>(prm.splits));
    kernel<<<grid, kConvThreads, static_cast<size_t>(bytes), stream>>>(prm);
    if (prm.splits > 1) {
      using Params = ConvUnitsParams<scalar_t, D>;
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
                                 const scalar_t* pre_shift, int64_t splits, int64_t steps_per_split,
                                 float* partial, bool index32, cudaStream_t stream) {
  cudaError_t status = cudaSuccess;
  with_conv_units(highres, highres_strides, lowres, lowres_strides, hr_pos, lr_pos, block_map, grid, weight, bias,
                  residual, out, cout, relu, quartered, stride, pre_scale, pre_shift, splits, steps_per_split,
                  partial, index32, LaunchConvUnits{stream, &status});
  return status != cudaSuccess ? status : cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_CONV_UNITS(T)                                                                        \
  template cudaError_t launch_conv3x3_units<T>(const T*, Strides4, const T*, Strides4, const int64_t*,           \
                                               const int64_t*, const int32_t*, const BlockGrid&, const T*, const T*, \
                                               const T*, T*, int64_t, bool, bool, int64_t, const T*, const T*, int64_t, \
                                               int64_t, float*, bool, cudaStream_t);

SEGBLOCKS_INSTANTIATE_CONV_UNITS(__half)
SEGBLOCKS_INSTANTIATE_CONV_UNITS(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_CONV_UNITS

}  // namespace cuda
}  // namespace segblocks
