"""The same question as cudnn_strided_probe.py, through cuDNN's graph (backend) API, which
the legacy API refused: can relu(conv(x) + bias + z) be written into the interior of padded
tiles (y and z strided views), at the speed of a packed output?

Builds one operation graph per case (convolution, then bias add, residual add and ReLU as
pointwise operations on virtual float tensors), asks heuristics mode A for engine
configurations, finalizes up to --plans execution plans and times each (CUDA events over
--reps back-to-back executions); reports the fastest per output form, next to
torch.cudnn_convolution_add_relu and a copy into the tiles' interior (about BlockPad).

    python benchmarks/cudnn_graph_probe.py [--json out.json]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cudnn_strided_probe import block_operands, load_cudnn_extension  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)

CPP = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <cudnn.h>
#include <cuda_runtime.h>
#include <vector>

#define CK(x) do { cudnnStatus_t s_ = (x); TORCH_CHECK(s_ == CUDNN_STATUS_SUCCESS, #x, ": ", cudnnGetErrorString(s_)); } while (0)
using Desc = cudnnBackendDescriptor_t;

static cudnnHandle_t handle() {
  static cudnnHandle_t h = nullptr;
  if (h == nullptr) CK(cudnnCreate(&h));
  CK(cudnnSetStream(h, at::cuda::getCurrentCUDAStream()));
  return h;
}

static Desc create(cudnnBackendDescriptorType_t t) { Desc d; CK(cudnnBackendCreateDescriptor(t, &d)); return d; }

static Desc tensor(int64_t uid, std::vector<int64_t> dims, std::vector<int64_t> strides, cudnnDataType_t dt,
                   bool is_virtual) {
  Desc d = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  int64_t align = 16;
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt));
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data()));
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data()));
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align));
  bool v = is_virtual;
  CK(cudnnBackendSetAttribute(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v));
  CK(cudnnBackendFinalize(d));
  return d;
}

static Desc tensor_of(int64_t uid, const at::Tensor& t) {
  std::vector<int64_t> dims(t.sizes().begin(), t.sizes().end()), strides(t.strides().begin(), t.strides().end());
  return tensor(uid, dims, strides, CUDNN_DATA_HALF, false);
}

static Desc pointwise_op(cudnnPointwiseMode_t mode, Desc x, Desc b, Desc y) {
  Desc pw = create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  CK(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
  CK(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec));
  CK(cudnnBackendFinalize(pw));
  Desc op = create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  CK(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw));
  CK(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
  if (b != nullptr) CK(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
  CK(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
  CK(cudnnBackendFinalize(op));
  return op;
}

// Plans for y = relu(conv(x, w) + b + z) (fused) or y = conv(x, w); returns, per plan that
// finalizes, its median time in ms over `reps` executions (the first `max_plans`).
std::vector<double> time_plans(at::Tensor x, at::Tensor w, at::Tensor b, at::Tensor z, at::Tensor y, bool fused,
                               int64_t max_plans, int64_t reps) {
  cudnnHandle_t h = handle();
  const int64_t N = y.size(0), K = y.size(1), H = y.size(2), W = y.size(3);
  Desc tx = tensor_of(1, x), tw = tensor_of(2, w), ty = tensor_of(3, y), tz = tensor_of(4, z);
  Desc tb = tensor(5, {1, K, 1, 1}, {K, 1, K, K}, CUDNN_DATA_HALF, false);
  std::vector<int64_t> vd{N, K, H, W}, vs{H * W * K, 1, W * K, K};
  Desc tc = fused ? tensor(10, vd, vs, CUDNN_DATA_FLOAT, true) : ty;
  Desc t1 = tensor(11, vd, vs, CUDNN_DATA_FLOAT, true), t2 = tensor(12, vd, vs, CUDNN_DATA_FLOAT, true);
  Desc conv = create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  int64_t nsp = 2, pad[2] = {0, 0}, str[2] = {1, 1}, dil[2] = {1, 1};
  cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  cudnnConvolutionMode_t cmode = CUDNN_CROSS_CORRELATION;
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &nsp));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &cmode));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil));
  CK(cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, str));
  CK(cudnnBackendFinalize(conv));
  Desc cop = create(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  float alpha = 1.f, beta = 0.f;
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx));
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw));
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tc));
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv));
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha));
  CK(cudnnBackendSetAttribute(cop, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta));
  CK(cudnnBackendFinalize(cop));
  std::vector<Desc> ops{cop};
  if (fused) {
    ops.push_back(pointwise_op(CUDNN_POINTWISE_ADD, tc, tb, t1));
    ops.push_back(pointwise_op(CUDNN_POINTWISE_ADD, t1, tz, t2));
    ops.push_back(pointwise_op(CUDNN_POINTWISE_RELU_FWD, t2, nullptr, ty));
  }
  Desc graph = create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  CK(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.size(), ops.data()));
  CK(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h));
  CK(cudnnBackendFinalize(graph));
  Desc heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  cudnnBackendHeurMode_t hmode = CUDNN_HEUR_MODE_A;
  CK(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
  CK(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hmode));
  CK(cudnnBackendFinalize(heur));
  int64_t count = 0;
  CK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  std::vector<Desc> cfgs(count);
  for (auto& c : cfgs) c = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  CK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count,
                              cfgs.data()));
  std::vector<double> times{(double)count};  // [configurations, then one time per plan that finalized]
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0); cudaEventCreate(&e1);
  for (int64_t i = 0; i < count && (int64_t)times.size() - 1 < max_plans; ++i) {
    Desc plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    CK(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h));
    CK(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]));
    if (cudnnBackendFinalize(plan) != CUDNN_STATUS_SUCCESS) { cudnnBackendDestroyDescriptor(plan); continue; }
    int64_t ws_size = 0;
    CK(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, nullptr, &ws_size));
    auto ws = at::empty({ws_size > 0 ? ws_size : 1}, x.options().dtype(at::kByte));
    void* ptrs[5] = {x.data_ptr(), w.data_ptr(), y.data_ptr(), z.data_ptr(), b.data_ptr()};
    int64_t uids[5] = {1, 2, 3, 4, 5};
    const int64_t n_ptrs = fused ? 5 : 3;
    Desc pack = create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    void* wsp = ws.data_ptr();
    CK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n_ptrs, ptrs));
    CK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n_ptrs, uids));
    CK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &wsp));
    CK(cudnnBackendFinalize(pack));
    if (cudnnBackendExecute(h, plan, pack) != CUDNN_STATUS_SUCCESS) { times.push_back(-1); continue; }
    cudaStream_t s = at::cuda::getCurrentCUDAStream();
    cudaEventRecord(e0, s);
    for (int64_t r = 0; r < reps; ++r) CK(cudnnBackendExecute(h, plan, pack));
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    times.push_back(ms / reps);
    cudnnBackendDestroyDescriptor(pack);
    cudnnBackendDestroyDescriptor(plan);
  }
  return times;
}
"""


def event_time_us(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    ext = load_cudnn_extension("cudnn_graph_probe", CPP, ["time_plans"])
    print(torch.cuda.get_device_name(dev), torch.__version__, "cuDNN", torch.backends.cudnn.version())
    rows = []
    for name, n, c, u in (("b1 layer1", 281, 64, 16), ("b4 layer1", 1127, 64, 16), ("b1 layer3", 281, 256, 4),
                          ("b4 layer2", 1127, 128, 8), ("b4 decoder", 1127, 128, 16)):
        xp, w, b, zc, zv, yc, yp, yv = block_operands(n, c, u)
        row = {"case": name, "units": n, "channels": c, "unit_side": u}
        with torch.inference_mode():
            want = torch.cudnn_convolution_add_relu(xp, w, zc, 1.0, b, (1, 1), (0, 0), (1, 1), 1)
            row["torch_us"] = event_time_us(lambda: torch.cudnn_convolution_add_relu(
                xp, w, zc, 1.0, b, (1, 1), (0, 0), (1, 1), 1), args.reps)
            row["copy_us"] = event_time_us(lambda: yv.copy_(zc), args.reps)
            for form, (y, z) in (("packed", (yc, zc)), ("strided", (yv, zv))):
                for fused in (False, True):
                    try:
                        res = ext.time_plans(xp, w, b, z, y, fused, args.plans, args.reps)
                    except RuntimeError as e:
                        row[f"{form}_{'fused' if fused else 'conv'}"] = f"error: {str(e)[:200]}"
                        continue
                    times = [v * 1e3 for v in res[1:] if v > 0]
                    row[f"{form}_{'fused' if fused else 'conv'}"] = {
                        "configs": int(res[0]), "plans_run": len(res) - 1,
                        "best_us": min(times) if times else None}
            if isinstance(row.get("strided_fused"), dict) and row["strided_fused"]["best_us"]:
                row["strided_fused_max_abs_diff"] = (yv.float() - want.float()).abs().max().item()
                row["ring_untouched"] = yp[:, :, 0].abs().max().item() == 0
        rows.append(row)
        print(json.dumps(row))
    write_probe_json(args.json, rows=rows)


if __name__ == "__main__":
    main()
