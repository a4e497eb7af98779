// One configuration of the halo-tile convolution (see configs.inc).
#include "halo_conv.cuh"

namespace halo_probe {
int halo_conv_s16_st2_u2_n64_te(const Problem& p, cudaStream_t stream) {
  return run<HaloConv<16, 2, 64, 4, false, true, false, 0, 2>>(p, stream);
}
}  // namespace halo_probe
