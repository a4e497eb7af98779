// Stand-in for type-checking the CUDA launchers without a CUDA torch (see README.md).
#pragma once
#include <c10/core/Device.h>
namespace c10 { namespace cuda { struct CUDAGuard { explicit CUDAGuard(c10::Device) {} }; } }
