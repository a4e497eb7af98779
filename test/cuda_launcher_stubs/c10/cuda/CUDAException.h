// Stand-in for type-checking the CUDA launchers without a CUDA torch (see README.md).
#pragma once
#include <cuda_runtime.h>
#define C10_CUDA_CHECK(expr) do { cudaError_t e_ = (expr); (void)e_; } while (0)
