// Stand-in for type-checking the CUDA launchers without a CUDA torch (see README.md).
#pragma once
#include <cuda_runtime.h>
namespace c10 { namespace cuda {
struct CUDAStream { operator cudaStream_t() const { return nullptr; } cudaStream_t stream() const { return nullptr; } };
inline CUDAStream getCurrentCUDAStream(int = -1) { return {}; }
} }
