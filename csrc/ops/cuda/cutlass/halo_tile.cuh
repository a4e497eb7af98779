// The pieces of the halo-tile convolution (conv_halo.cuh) that its probe
// (benchmarks/halo_conv_probe/halo_conv.cuh, whose gathered and stride-2 forms are not in the
// product yet) shares: A fragments by ldmatrix from shared memory, wgmma with A in registers
// and B by a 128-byte-swizzle K-major descriptor, and the float16 128-byte-swizzle tensor maps.
// Torch-free; cute's PTX wrappers and CUTLASS's driver-API adapter only.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cute/arch/mma_sm90_desc.hpp"
#include "cute/arch/mma_sm90_gmma.hpp"
#include "cutlass/cuda_host_adapter.hpp"

namespace segblocks {
namespace cuda {
namespace halo {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// K-major B, 128-byte swizzle: rows of 64 halves, 8-row groups 1024 B apart
__device__ __forceinline__ uint64_t desc_b_sw128(uint32_t addr) {
  cute::GmmaDescriptor d;
  d.bitfield.start_address_ = static_cast<uint16_t>((addr & 0x3FFFF) >> 4);
  d.bitfield.leading_byte_offset_ = 1;
  d.bitfield.stride_byte_offset_ = 1024 >> 4;
  d.bitfield.base_offset_ = 0;
  d.bitfield.layout_type_ = 1;  // SWIZZLE_128B
  return d.desc_;
}

// wgmma m64nNk16, float32 += float16 x float16, A in registers (Op: cute's MMA_64xNx16_F32F16F16_RS)
template <class Op, int kAcc, size_t... I>
__device__ __forceinline__ void wgmma_rs(const uint32_t (&a)[4], uint64_t desc, float (&d)[kAcc],
                                         std::index_sequence<I...>) {
  Op::fma(a[0], a[1], a[2], a[3], desc, d[I]..., cute::SM90::GMMA::ScaleOut::One);
}

template <int kN>
struct WgmmaRS;
template <>
struct WgmmaRS<64> {
  using Op = cute::SM90::GMMA::MMA_64x64x16_F32F16F16_RS<cute::SM90::GMMA::Major::K, cute::SM90::GMMA::Major::K>;
};
template <>
struct WgmmaRS<128> {
  using Op = cute::SM90::GMMA::MMA_64x128x16_F32F16F16_RS<cute::SM90::GMMA::Major::K, cute::SM90::GMMA::Major::K>;
};

// A float16 tensor map of rank 2-5 with the 128-byte swizzle: dims innermost first, byte
// strides of dims 1.., box per dim; true on success.
template <int kRank>
inline bool encode_f16_sw128(CUtensorMap* map, const void* ptr, const cuuint64_t (&dims)[kRank],
                             const cuuint64_t (&strides)[kRank - 1], const cuuint32_t (&box)[kRank]) {
  cuuint32_t elem[kRank];
  for (int i = 0; i < kRank; ++i) elem[i] = 1;
  return cutlass::call_cuTensorMapEncodeTiled(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, kRank, const_cast<void*>(ptr),
                                              dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                              CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace halo
}  // namespace cuda
}  // namespace segblocks
