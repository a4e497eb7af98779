// conv3x3_units on CUDA (torch-free: compiles with plain nvcc, see DESIGN.md section 6): an
// implicit GEMM on the tensor cores (ldmatrix + mma.sync m16n8k16, float32 accumulation)
// around the per-thread pieces of ops/conv_units.h. A small kernel first writes where each
// halo pixel of each tile comes from (the table). Then persistent thread blocks of 256
// threads (at most 128 registers each, so two fit an SM where shared memory allows) run the
// work items (a kConvBM x kConvBN output tile and K split) blockIdx.x,
// + gridDim.x, ...: per chunk of kConvBK input channels they stage the halo tile
// (cp.async for plain copies; BlockPad's 2x2 means, the prologue and the zero border
// computed) and the chunk's weights for the nine taps into a ring of kConvStages buffers,
// the next two chunks' in flight while the current one is multiplied; each warp
// multiplies a 32 x 32 eighth of the tile, reading A rows straight out of the halo tile at
// each tap's offset.
// Instantiated for half and bfloat16.
#include <type_traits>

#include "ops/cuda/block_ops_cuda.h"
#include "ops/cuda/conv_units.cuh"

namespace segblocks {
namespace cuda {
namespace {

__host__ __device__ constexpr int64_t align128(int64_t bytes) { return (bytes + 127) / 128 * 128; }

constexpr int kConvStages = 3;  // stages in the ring: two in flight while one is multiplied

// Dynamic shared memory of a thread block, in bytes from its start: kConvStages stages (a
// halo tile, then a chunk's weights for the nine taps); an item's float32 output tile
// reuses the stage it finished with.
struct ConvSmemLayout {
  int64_t halo_bytes, stage_bytes, total;
};

template <typename scalar_t>
__host__ __device__ ConvSmemLayout conv_smem_layout(int64_t halo_pixels) {
  ConvSmemLayout l{};
  l.halo_bytes = align128(halo_pixels * kConvPitch * static_cast<int64_t>(sizeof(scalar_t)));
  const int64_t stage = l.halo_bytes + align128(9 * kConvBN * kConvPitch * static_cast<int64_t>(sizeof(scalar_t)));
  const int64_t c_tile = align128(kConvBM * kConvCPitch * 4);
  l.stage_bytes = stage > c_tile ? stage : c_tile;
  l.total = kConvStages * l.stage_bytes;
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

// A position in a thread block's sequence of stages: work item `item` (of `items`), chunk
// `chunk` of its split's chunks [range.first, range.last).
template <typename scalar_t, typename D>
struct ConvCursor {
  int64_t item, items, stride, chunk;
  ConvItem it;
  ConvChunks range;
  __device__ void set(const ConvUnitsParams<scalar_t, D>& prm, int64_t i) {
    item = i;
    if (item >= items) return;
    it = conv_units_item(prm, item);
    range = conv_units_split_chunks(prm, it.split);
    chunk = range.first;
  }
  __device__ void advance(const ConvUnitsParams<scalar_t, D>& prm) {
    if (++chunk >= range.last) set(prm, item + stride);
  }
  __device__ bool valid() const { return item < items; }
  __device__ bool first_chunk() const { return chunk == range.first; }
  __device__ bool last_chunk() const { return chunk + 1 >= range.last; }
};

template <typename Cvt, typename D>
__global__ void __launch_bounds__(kConvThreads, 2)
    conv_units_kernel(const __grid_constant__ ConvUnitsParams<typename Cvt::scalar_t, D> prm) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using scalar_t = typename Cvt::scalar_t;
  using Src = PadSource<typename D::index_t>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int halo_pixels = static_cast<int>(prm.tiling.halo_pixels);
  const ConvSmemLayout lay = conv_smem_layout<scalar_t>(halo_pixels);
  const auto halo = [&](int b) { return reinterpret_cast<scalar_t*>(smem + b * lay.stage_bytes); };
  const auto slab = [&](int b) {
    return reinterpret_cast<scalar_t*>(smem + b * lay.stage_bytes + lay.halo_bytes);
  };

  const int t = static_cast<int>(threadIdx.x), warp = t / 32, lane = t % 32;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  const int64_t items = conv_units_items(prm);
  ConvHaloGather<Cvt, D> gather(prm);
  // ldmatrix rows of this lane. A (rows wm + 16 i .. + 16 of the tile): row lane % 16 at
  // channel offset (lane / 16) * 8, as the halo pixel of its window's top left (set per
  // item). B (two n8 x k16 fragments per x4): output channel (lane % 8) + (lane / 16) * 8,
  // offset ((lane / 8) % 2) * 8.
  int a_row[2] = {0, 0};
  const int b_row = (wn + (lane & 7) + (lane >> 4) * 8) * kConvPitch + ((lane >> 3) & 1) * 8;

  // the stage at `load` into buffer b: the halo tile (plain copies asynchronously, the
  // rest computed and stored) and the weights
  ConvCursor<scalar_t, D> load{0, items, static_cast<int64_t>(gridDim.x), 0, {}, {}}, comp = load;
  const auto issue = [&](int b) {
    if (!load.valid()) return;
    const Src* table = prm.table + load.it.m_tile * halo_pixels;
    const int64_t c0 = load.chunk * kConvBK;
    scalar_t* tile = halo(b);
    // four threads per pixel, a 16-byte pack each (64 contiguous bytes of the pixel)
    for (int e = t; e < halo_pixels * kConvPacksPerPixel; e += kConvThreads) {
      const int hp = e / kConvPacksPerPixel, p = e % kConvPacksPerPixel;
      const Src src = table[hp];
      const int64_t c = c0 + p * kConvPack;
      scalar_t* dst = tile + hp * kConvPitch + p * kConvPack;
      const scalar_t* g = gather.copy_source(src, c);
      if (g != nullptr) {
        cp_async16(dst, g);
      } else {
        gather.compute(src, c, dst);
      }
    }
    // this thread's slab packs: one output channel's row, tap by tap
    if (t < kConvSlabRows) {
      scalar_t* w = slab(b) + conv_slab_offset(t);
      const scalar_t* src = conv_slab_source(prm, load.it.n_tile, load.chunk, t);
#pragma unroll
      for (int tap = 0; tap < 9; ++tap) cp_async16(w + tap * kConvBN * kConvPitch, src + tap * prm.cin);
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
  load.set(prm, blockIdx.x);
  comp.set(prm, blockIdx.x);
  // stages 0 .. kConvStages - 2 in flight before the first multiply (one commit group per
  // stage, empty past the end, so the wait below always counts the same)
#pragma unroll
  for (int b = 0; b < kConvStages - 1; ++b) {
    issue(b);
    cp_async_commit();
    load.advance(prm);
  }
  for (int b = 0; comp.valid(); b = b + 1 == kConvStages ? 0 : b + 1) {
    cp_async_wait<kConvStages - 2>();  // this stage's copies (this thread's) have landed
    __syncthreads();  // ... everyone's; everyone is done with the stage before (and its output tile)
    issue(b == 0 ? kConvStages - 1 : b - 1);
    cp_async_commit();
    load.advance(prm);
    if (comp.first_chunk()) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        a_row[i] = static_cast<int>(conv_tile_halo(prm.tiling, comp.it.m_tile, wm + 16 * i + (lane & 15))) *
                       kConvPitch + (lane >> 4) * 8;
      }
    }
    const scalar_t* h = halo(b);
    const scalar_t* w = slab(b);
#pragma unroll
    for (int tap = 0; tap < 9; ++tap) {
      const scalar_t* a_s = h + static_cast<int>(conv_tap_offset(prm.tiling, tap / 3, tap % 3)) * kConvPitch;
      const scalar_t* b_s = w + tap * kConvBN * kConvPitch;
#pragma unroll
      for (int kk = 0; kk < kConvBK; kk += 16) {
        uint32_t a[2][4], bf[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) ldmatrix_x4(a[i], a_s + a_row[i] + kk);
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) ldmatrix_x4(bf[jj], b_s + b_row + jj * 16 * kConvPitch + kk);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            mma16816<scalar_t>(acc[i][j], a[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
          }
        }
      }
    }
    if (comp.last_chunk()) {  // the item's sums: through the output tile (in this stage) to the epilogue
      __syncthreads();  // everyone is done reading the stage
      float* c_tile = reinterpret_cast<float*>(halo(b));
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
#pragma unroll
          for (int l = 0; l < 4; ++l) acc[i][j][l] = 0.0f;
        }
      }
      __syncthreads();
      conv_units_epilogue<Cvt, D>(prm, comp.it.m_tile, comp.it.n_tile, comp.it.split, c_tile, t);
      // the stage is loaded again only after the next iteration's __syncthreads
    }
    comp.advance(prm);
  }
  cp_async_wait<0>();
#else
  __trap();  // the launcher only runs on sm_80+
#endif
}

struct LaunchConvUnits {
  cudaStream_t stream;
  int sms;
  cudaError_t* status;
  template <typename Cvt, typename D>
  void operator()(const ConvUnitsParams<typename Cvt::scalar_t, D>& prm) const {
    using scalar_t = typename Cvt::scalar_t;
    using Params = ConvUnitsParams<scalar_t, D>;
    const int64_t entries = prm.tiling.m_tiles * prm.tiling.halo_pixels;
    grid_stride_kernel<Params, &conv_units_table_element<Cvt, D>>
        <<<blocks_for(entries), kThreadsPerBlock, 0, stream>>>(prm, entries);
    const auto kernel = conv_units_kernel<Cvt, D>;
    const int64_t bytes = conv_smem_layout<scalar_t>(prm.tiling.halo_pixels).total;
    // above the default 48 KB a kernel has to ask for its dynamic shared memory (per device:
    // asked at every launch, a host-side call)
    if (bytes > 48 * 1024) {
      *status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
      if (*status != cudaSuccess) return;
    }
    int per_sm = 0;
    *status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kConvThreads, static_cast<size_t>(bytes));
    if (*status != cudaSuccess) return;
    if (per_sm < 1) {
      *status = cudaErrorInvalidConfiguration;
      return;
    }
    const int64_t items = conv_units_items(prm);
    const int64_t resident = static_cast<int64_t>(sms) * per_sm;
    kernel<<<static_cast<unsigned>(items < resident ? items : resident), kConvThreads, static_cast<size_t>(bytes),
             stream>>>(prm);
    if (prm.splits > 1) {
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
                                 const scalar_t* pre_shift, int64_t splits, void* table, float* partial,
                                 bool index32, int sms, cudaStream_t stream) {
  cudaError_t status = cudaSuccess;
  const ConvSplitPlan plan = conv_units_split_plan(grid.channels / kConvBK, splits);
  with_conv_units(highres, highres_strides, lowres, lowres_strides, hr_pos, lr_pos, block_map, grid, weight, bias,
                  residual, out, cout, relu, quartered, stride, pre_scale, pre_shift, plan, table, partial, index32,
                  LaunchConvUnits{stream, sms, &status});
  return status != cudaSuccess ? status : cudaGetLastError();
}

#define SEGBLOCKS_INSTANTIATE_CONV_UNITS(T)                                                                        \
  template cudaError_t launch_conv3x3_units<T>(const T*, Strides4, const T*, Strides4, const int64_t*,           \
                                               const int64_t*, const int32_t*, const BlockGrid&, const T*, const T*, \
                                               const T*, T*, int64_t, bool, bool, int64_t, const T*, const T*, int64_t, \
                                               void*, float*, bool, int, cudaStream_t);

SEGBLOCKS_INSTANTIATE_CONV_UNITS(__half)
SEGBLOCKS_INSTANTIATE_CONV_UNITS(__nv_bfloat16)
#undef SEGBLOCKS_INSTANTIATE_CONV_UNITS

}  // namespace cuda
}  // namespace segblocks
