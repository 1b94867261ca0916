// Eden's native kernels: oneDNN (the library PyTorch's CPU convolutions use) behind TF.js's wasm
// backend. Every function works in place on the wasm heap: TF.js passes the heap's ArrayBuffer and
// byte offsets of NHWC tensors and HWIO filters, oneDNN reads and writes them directly (no copies).
// Primitives are created once per shape and cached. All calls are synchronous, as TF.js kernels
// must be.
#include <node_api.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include <algorithm>
#include <atomic>
#include <cmath>

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& cpuEngine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& cpuStream() {
  static dnnl::stream s(cpuEngine());
  return s;
}

#define NAPI_CALL(env, call)                                   \
  do {                                                         \
    if ((call) != napi_ok) {                                   \
      napi_throw_error((env), nullptr, "N-API call failed: " #call); \
      return nullptr;                                          \
    }                                                          \
  } while (0)

// Calls per entry point, so that tests can prove which kernels really ran (a kernel name alone
// cannot tell the native Conv2D from the stock wasm one). Each kernel's property descriptor
// carries a pointer to its counter as `data`; readArgs increments it.
const char* const kKernelNames[] = {"conv2d", "conv2dBackpropInput", "conv2dBackpropFilter", "matmul", "reduceRows", "binary", "maxPoolGrad", "batchNormForward", "batchNormBackward", "sgdEma", "adam", "fusedConv2d", "concatChannels", "slice"};
constexpr size_t kKernelCount = sizeof(kKernelNames) / sizeof(kKernelNames[0]);
std::atomic<uint64_t> gCalls[kKernelCount];

struct Args {
  uint8_t* heap = nullptr;
  size_t heapLength = 0;
  int32_t* params = nullptr;
  size_t paramCount = 0;
};

// (heap: ArrayBuffer, params: Int32Array)
bool readArgs(napi_env env, napi_callback_info info, Args& a) {
  size_t argc = 2;
  napi_value argv[2];
  void* counter = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, &counter) != napi_ok || argc < 2) {
    napi_throw_type_error(env, nullptr, "expected (heap: ArrayBuffer, params: Int32Array)");
    return false;
  }
  if (counter) static_cast<std::atomic<uint64_t>*>(counter)->fetch_add(1, std::memory_order_relaxed);
  void* data = nullptr;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &a.heapLength) != napi_ok) {
    napi_throw_type_error(env, nullptr, "first argument must be the wasm heap's ArrayBuffer");
    return false;
  }
  a.heap = static_cast<uint8_t*>(data);
  napi_typedarray_type type;
  size_t length;
  void* pdata;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &pdata, &buffer, &offset) != napi_ok || type != napi_int32_array) {
    napi_throw_type_error(env, nullptr, "second argument must be an Int32Array of parameters");
    return false;
  }
  a.params = static_cast<int32_t*>(pdata);
  a.paramCount = length;
  return true;
}

// Offsets travel in an Int32Array but are unsigned: the wasm heap may grow past 2 GiB.
float* at(const Args& a, int32_t offset) { return reinterpret_cast<float*>(a.heap + static_cast<uint32_t>(offset)); }

// Conv parameters, in this order in `params`:
//  0 xOff 1 wOff 2 yOff  3 N 4 H 5 W 6 Ci  7 KH 8 KW 9 Co  10 OH 11 OW
//  12 strideH 13 strideW 14 dilH 15 dilW (TF convention, 1 = none)  16 padTop 17 padLeft 18 padBottom 19 padRight
struct ConvShape {
  memory::dims src, wei, dst, strides, dilates, padL, padR;
  std::string key;
};

ConvShape convShape(const int32_t* p) {
  ConvShape s;
  s.src = {p[3], p[6], p[4], p[5]};    // logical NCHW dims; the format tag says NHWC in memory
  s.wei = {p[9], p[6], p[7], p[8]};    // OIHW logical; HWIO in memory
  s.dst = {p[3], p[9], p[10], p[11]};
  s.strides = {p[12], p[13]};
  s.dilates = {p[14] - 1, p[15] - 1};  // oneDNN counts dilation from 0
  s.padL = {p[16], p[17]};
  s.padR = {p[18], p[19]};
  s.key.reserve(96);
  for (int i = 3; i < 20; i++) {
    s.key += std::to_string(p[i]);
    s.key += ',';
  }
  return s;
}

// Weights are passed as HWIO, but oneDNN's fast convolutions (brgconv / jit avx512) want their
// own blocked weight layouts: each primitive is created with `any` weights and a reorder to or
// from HWIO runs around it when the chosen layout differs (the weights are small next to the
// activations, which stay NHWC in place).
struct ConvPrims {
  memory::desc src, wei, dst;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwdData;
  dnnl::convolution_backward_weights bwdWeights;
  memory::desc fwdWei, bwdDataWei, bwdWeightsWei;
  // Reorders HWIO -> primitive layout (forward, backward data) and back (backward weights).
  dnnl::reorder toFwd, toBwdData, fromBwdWeights;
  memory fwdWeiMem, bwdDataWeiMem, bwdWeightsWeiMem;
};

std::mutex cacheMutex;
std::unordered_map<std::string, std::shared_ptr<ConvPrims>> convCache;

std::shared_ptr<ConvPrims> convPrims(const ConvShape& s) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  auto it = convCache.find(s.key);
  if (it != convCache.end()) return it->second;
  auto P = std::make_shared<ConvPrims>();
  auto& eng = cpuEngine();
  P->src = memory::desc(s.src, dt::f32, tag::nhwc);
  P->wei = memory::desc(s.wei, dt::f32, tag::hwio);
  P->dst = memory::desc(s.dst, dt::f32, tag::nhwc);
  const memory::desc anyWei(s.wei, dt::f32, tag::any);
  dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, P->src, anyWei, P->dst, s.strides, s.dilates, s.padL, s.padR);
  dnnl::convolution_forward::primitive_desc fpd(fd, eng);
  P->fwd = dnnl::convolution_forward(fpd);
  P->fwdWei = fpd.weights_desc();
  dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, P->src, anyWei, P->dst, s.strides, s.dilates, s.padL, s.padR);
  dnnl::convolution_backward_data::primitive_desc bdpd(bd, eng, fpd);
  P->bwdData = dnnl::convolution_backward_data(bdpd);
  P->bwdDataWei = bdpd.weights_desc();
  dnnl::convolution_backward_weights::desc wd(dnnl::algorithm::convolution_direct, P->src, anyWei, P->dst, s.strides, s.dilates, s.padL, s.padR);
  dnnl::convolution_backward_weights::primitive_desc wpd(wd, eng, fpd);
  P->bwdWeights = dnnl::convolution_backward_weights(wpd);
  P->bwdWeightsWei = wpd.diff_weights_desc();
  if (P->fwdWei != P->wei) {
    P->fwdWeiMem = memory(P->fwdWei, eng);
    P->toFwd = dnnl::reorder(dnnl::reorder::primitive_desc(eng, P->wei, eng, P->fwdWei));
  }
  if (P->bwdDataWei != P->wei) {
    P->bwdDataWeiMem = memory(P->bwdDataWei, eng);
    P->toBwdData = dnnl::reorder(dnnl::reorder::primitive_desc(eng, P->wei, eng, P->bwdDataWei));
  }
  if (P->bwdWeightsWei != P->wei) {
    P->bwdWeightsWeiMem = memory(P->bwdWeightsWei, eng);
    P->fromBwdWeights = dnnl::reorder(dnnl::reorder::primitive_desc(eng, P->bwdWeightsWei, eng, P->wei));
  }
  convCache.emplace(s.key, P);
  return P;
}

// The HWIO weights `w` as a primitive wants them: `w` itself, or reordered into `held` when the
// primitive chose another layout (`wanted`).
// (dnnl::memory is a handle: passed by value, it shares the buffer.)
memory weightsAs(dnnl::stream& stream, memory w, const memory::desc& wanted, const dnnl::reorder& reorder, memory& held) {
  if (wanted == w.get_desc()) return w;
  reorder.execute(stream, w, held);
  return held;
}

napi_value runConv(napi_env env, napi_callback_info info, int which) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  if (a.paramCount < 20) {
    napi_throw_range_error(env, nullptr, "conv expects 20 parameters");
    return nullptr;
  }
  try {
    const ConvShape s = convShape(a.params);
    auto P = convPrims(s);
    auto& eng = cpuEngine();
    memory x(P->src, eng, at(a, a.params[0]));
    memory w(P->wei, eng, at(a, a.params[1]));
    memory y(P->dst, eng, at(a, a.params[2]));
    auto& stream = cpuStream();
    if (which == 0) {
      P->fwd.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, weightsAs(stream, w, P->fwdWei, P->toFwd, P->fwdWeiMem)}, {DNNL_ARG_DST, y}});
    } else if (which == 1) {
      // x <- dx, y <- dy
      P->bwdData.execute(stream, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, weightsAs(stream, w, P->bwdDataWei, P->toBwdData, P->bwdDataWeiMem)}, {DNNL_ARG_DIFF_DST, y}});
    } else {
      // w <- dw, y <- dy
      if (P->bwdWeightsWei != P->wei) {
        P->bwdWeights.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, P->bwdWeightsWeiMem}, {DNNL_ARG_DIFF_DST, y}});
        P->fromBwdWeights.execute(stream, P->bwdWeightsWeiMem, w);
      } else {
        P->bwdWeights.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, y}});
      }
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    napi_throw_error(env, nullptr, (std::string("oneDNN: ") + e.what()).c_str());
  }
  return nullptr;
}

// Inference convolution with a per-channel bias and optional ReLU applied by oneDNN as the output
// is written (a batch norm folded into the weights, then its activation): one pass over the output
// instead of three (multiply, add, ReLU). Params: the 20 conv parameters, then
// 20 biasOff 21 hasBias 22 relu.
struct FusedConvPrim {
  dnnl::convolution_forward fwd;
  memory::desc src, wei, dst, bias, fwdWei;
  dnnl::reorder toFwd;
  memory fwdWeiMem;
};
std::unordered_map<std::string, std::shared_ptr<FusedConvPrim>> fusedConvCache;

std::shared_ptr<FusedConvPrim> fusedConvPrim(const ConvShape& s, bool hasBias, bool relu) {
  const std::string key = s.key + (hasBias ? "b" : "") + (relu ? "r" : "");
  std::lock_guard<std::mutex> lock(cacheMutex);
  auto it = fusedConvCache.find(key);
  if (it != fusedConvCache.end()) return it->second;
  auto P = std::make_shared<FusedConvPrim>();
  auto& eng = cpuEngine();
  P->src = memory::desc(s.src, dt::f32, tag::nhwc);
  P->wei = memory::desc(s.wei, dt::f32, tag::hwio);
  P->dst = memory::desc(s.dst, dt::f32, tag::nhwc);
  P->bias = memory::desc({s.dst[1]}, dt::f32, tag::x);
  const memory::desc anyWei(s.wei, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  const auto fd = hasBias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, P->src, anyWei, P->bias, P->dst, s.strides, s.dilates, s.padL, s.padR)
                          : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, P->src, anyWei, P->dst, s.strides, s.dilates, s.padL, s.padR);
  dnnl::convolution_forward::primitive_desc fpd(fd, attr, eng);
  P->fwd = dnnl::convolution_forward(fpd);
  P->fwdWei = fpd.weights_desc();
  if (P->fwdWei != P->wei) {
    P->fwdWeiMem = memory(P->fwdWei, eng);
    P->toFwd = dnnl::reorder(dnnl::reorder::primitive_desc(eng, P->wei, eng, P->fwdWei));
  }
  fusedConvCache.emplace(key, P);
  return P;
}

napi_value FusedConv2D(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  if (a.paramCount < 23) {
    napi_throw_range_error(env, nullptr, "fusedConv2d expects 23 parameters");
    return nullptr;
  }
  try {
    const bool hasBias = a.params[21] != 0, relu = a.params[22] != 0;
    auto P = fusedConvPrim(convShape(a.params), hasBias, relu);
    auto& eng = cpuEngine();
    auto& stream = cpuStream();
    memory x(P->src, eng, at(a, a.params[0]));
    memory w(P->wei, eng, at(a, a.params[1]));
    memory y(P->dst, eng, at(a, a.params[2]));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, weightsAs(stream, w, P->fwdWei, P->toFwd, P->fwdWeiMem)}, {DNNL_ARG_DST, y}};
    if (hasBias) args.emplace(DNNL_ARG_BIAS, memory(P->bias, eng, at(a, a.params[20])));
    P->fwd.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    napi_throw_error(env, nullptr, (std::string("oneDNN: ") + e.what()).c_str());
  }
  return nullptr;
}

// Concatenation along the last axis of row-major tensors (the U-Net's skip connections, NHWC):
// output row r is input 0's row r, then input 1's, ... Params: 0 outOff 1 rows 2 count, then per
// input: offset, channels.
napi_value ConcatChannels(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  if (a.paramCount < 3 || a.paramCount < 3 + 2 * static_cast<size_t>(p[2])) {
    napi_throw_range_error(env, nullptr, "concatChannels expects 3 + 2 x inputs parameters");
    return nullptr;
  }
  float* out = at(a, p[0]);
  const int64_t rows = p[1];
  const int count = p[2];
  std::vector<const float*> src(count);
  std::vector<int64_t> width(count);
  int64_t total = 0;
  for (int i = 0; i < count; i++) {
    src[i] = at(a, p[3 + 2 * i]);
    width[i] = p[4 + 2 * i];
    total += width[i];
  }
#pragma omp parallel for schedule(static) if (rows * total > 65536)
  for (int64_t r = 0; r < rows; r++) {
    float* o = out + r * total;
    for (int i = 0; i < count; i++) {
      std::memcpy(o, src[i] + r * width[i], sizeof(float) * width[i]);
      o += width[i];
    }
  }
  return nullptr;
}

// A box of a row-major tensor of 4-byte elements: out = x[begin[0] : begin[0] + size[0], ...] (the
// gradient of a pad, the pieces of a split). Params: 0 xOff 1 outOff 2 rank, then shape, begin and
// size, rank values each. Copied as runs: the trailing axes taken whole, times the last partial one.
napi_value Slice(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const int rank = a.paramCount >= 3 ? p[2] : -1;
  if (rank < 0 || rank > 8 || a.paramCount < 3 + 3 * static_cast<size_t>(rank)) {
    napi_throw_range_error(env, nullptr, "slice expects 3 + 3 x rank parameters (rank at most 8)");
    return nullptr;
  }
  const float* x = at(a, p[0]);
  float* out = at(a, p[1]);
  int64_t shape[8], begin[8], size[8], stride[8];
  for (int d = 0; d < rank; d++) {
    shape[d] = p[3 + d];
    begin[d] = p[3 + rank + d];
    size[d] = p[3 + 2 * rank + d];
  }
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d];
  }
  // Axes after `last` are whole: each run is size[last] x their extent, contiguous in x and out.
  int last = rank - 1;
  int64_t run = 1;
  while (last >= 0 && begin[last] == 0 && size[last] == shape[last]) run *= shape[last--];
  int64_t base = 0;
  if (last >= 0) {
    run *= size[last];
    base = begin[last] * stride[last];
  }
  int64_t runs = 1;
  for (int d = 0; d < last; d++) runs *= size[d];
  if (run == 0 || runs == 0) return nullptr;
#pragma omp parallel for schedule(static) if (runs * run > 65536)
  for (int64_t r = 0; r < runs; r++) {
    int64_t from = base;
    for (int64_t d = last - 1, rest = r; d >= 0; d--) {
      from += (begin[d] + rest % size[d]) * stride[d];
      rest /= size[d];
    }
    std::memcpy(out + r * run, x + from, sizeof(float) * run);
  }
  return nullptr;
}

napi_value Conv2D(napi_env env, napi_callback_info info) { return runConv(env, info, 0); }
napi_value Conv2DBackpropInput(napi_env env, napi_callback_info info) { return runConv(env, info, 1); }
napi_value Conv2DBackpropFilter(napi_env env, napi_callback_info info) { return runConv(env, info, 2); }

// MatMul: 0 aOff 1 bOff 2 cOff 3 batch 4 M 5 K 6 N 7 transA 8 transB 9 aBatchStride(0 = broadcast) 10 bBatchStride
struct MatMulPrim {
  dnnl::matmul prim;
  memory::desc a, b, c;
};
std::unordered_map<std::string, std::shared_ptr<MatMulPrim>> matmulCache;

napi_value MatMul(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  if (a.paramCount < 11) {
    napi_throw_range_error(env, nullptr, "matmul expects 11 parameters");
    return nullptr;
  }
  const int32_t* p = a.params;
  const memory::dim B = p[3], M = p[4], K = p[5], N = p[6];
  const bool ta = p[7] != 0, tb = p[8] != 0;
  const bool aBroadcast = p[9] == 0, bBroadcast = p[10] == 0;
  std::string key;
  for (int i = 3; i < 11; i++) key += std::to_string(p[i]) + ",";
  try {
    std::shared_ptr<MatMulPrim> mp;
    {
      std::lock_guard<std::mutex> lock(cacheMutex);
      auto it = matmulCache.find(key);
      if (it != matmulCache.end()) mp = it->second;
    }
    if (!mp) {
      mp = std::make_shared<MatMulPrim>();
      // Strides express the transposes: A is [B, M, K] read from [B, K, M] when transposed.
      memory::dims aStrides = ta ? memory::dims{aBroadcast ? 0 : M * K, 1, M} : memory::dims{aBroadcast ? 0 : M * K, K, 1};
      memory::dims bStrides = tb ? memory::dims{bBroadcast ? 0 : K * N, 1, K} : memory::dims{bBroadcast ? 0 : K * N, N, 1};
      mp->a = memory::desc({aBroadcast ? 1 : B, M, K}, dt::f32, aStrides);
      mp->b = memory::desc({bBroadcast ? 1 : B, K, N}, dt::f32, bStrides);
      mp->c = memory::desc({B, M, N}, dt::f32, tag::abc);
      dnnl::matmul::desc d(mp->a, mp->b, mp->c);
      mp->prim = dnnl::matmul(dnnl::matmul::primitive_desc(d, cpuEngine()));
      std::lock_guard<std::mutex> lock(cacheMutex);
      matmulCache.emplace(key, mp);
    }
    auto& eng = cpuEngine();
    memory am(mp->a, eng, at(a, p[0]));
    memory bm(mp->b, eng, at(a, p[1]));
    memory cm(mp->c, eng, at(a, p[2]));
    auto& stream = cpuStream();
    mp->prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  } catch (const dnnl::error& e) {
    napi_throw_error(env, nullptr, (std::string("oneDNN: ") + e.what()).c_str());
  }
  return nullptr;
}

// ---- Memory-bound kernels: plain loops, vectorised by the compiler, split over OpenMP threads.

// Per-channel sums over the rows of a [rows, C] view, split across OpenMP threads in double
// precision: `accumulate(r, acc)` adds row r's terms into acc ([k][C] accumulators). Returns the
// totals, [k][C].
template <typename F>
std::vector<double> channelSums(int64_t rows, int64_t C, int k, F accumulate) {
  std::vector<double> total(k * C, 0.0);
#pragma omp parallel if (rows * C > 65536)
  {
    std::vector<double> acc(k * C, 0.0);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < rows; r++) accumulate(r, acc.data());
#pragma omp critical
    for (int64_t i = 0; i < k * C; i++) total[i] += acc[i];
  }
  return total;
}

// Per-channel reduction of a [rows, C] view (NHWC over N, H, W): 0 xOff 1 outOff 2 rows 3 C 4 mean
// Double accumulators: batch-norm statistics sum ~1e5 rows.
napi_value ReduceRows(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const float* x = at(a, p[0]);
  float* out = at(a, p[1]);
  const int64_t rows = p[2], C = p[3];
  const bool mean = p[4] != 0;
  const std::vector<double> total = channelSums(rows, C, 1, [&](int64_t r, double* acc) {
    for (int64_t c = 0; c < C; c++) acc[c] += x[r * C + c];
  });
  const double scale = mean ? 1.0 / static_cast<double>(rows) : 1.0;
  for (int64_t c = 0; c < C; c++) out[c] = static_cast<float>(total[c] * scale);
  return nullptr;
}

// Elementwise binary op with the broadcasts a network uses:
// 0 op (0 add, 1 sub, 2 mul, 3 div) 1 aOff 2 bOff 3 outOff 4 n (output size) 5 C 6 mode
// mode 0: same shape; 1: a is a scalar; 2: b is a scalar; 3: b is per-channel [C]; 4: a is per-channel [C]
template <typename F>
void binaryLoop(const float* A, const float* B, float* O, int64_t n, int64_t C, int mode, F f) {
  if (mode == 0 || mode == 1 || mode == 2) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) O[i] = f(mode == 1 ? A[0] : A[i], mode == 2 ? B[0] : B[i]);
    return;
  }
  const int64_t rows = n / C;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t base = r * C;
    if (mode == 3)
      for (int64_t c = 0; c < C; c++) O[base + c] = f(A[base + c], B[c]);
    else
      for (int64_t c = 0; c < C; c++) O[base + c] = f(A[c], B[base + c]);
  }
}

napi_value Binary(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const float* A = at(a, p[1]);
  const float* B = at(a, p[2]);
  float* O = at(a, p[3]);
  const int64_t n = p[4], C = p[5];
  const int mode = p[6];
  switch (p[0]) {
    case 0: binaryLoop(A, B, O, n, C, mode, [](float x, float y) { return x + y; }); break;
    case 1: binaryLoop(A, B, O, n, C, mode, [](float x, float y) { return x - y; }); break;
    case 2: binaryLoop(A, B, O, n, C, mode, [](float x, float y) { return x * y; }); break;
    case 3: binaryLoop(A, B, O, n, C, mode, [](float x, float y) { return x / y; }); break;
    default: napi_throw_range_error(env, nullptr, "unknown binary op");
  }
  return nullptr;
}

// Max-pool gradient (first maximum of each window wins, as TF's cpu kernel):
// 0 xOff 1 dyOff 2 dxOff 3 N 4 H 5 W 6 C 7 OH 8 OW 9 sh 10 sw 11 fh 12 fw 13 padTop 14 padLeft
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const float* x = at(a, p[0]);
  const float* dy = at(a, p[1]);
  float* dx = at(a, p[2]);
  const int64_t N = p[3], H = p[4], W = p[5], C = p[6], OH = p[7], OW = p[8];
  const int sh = p[9], sw = p[10], fh = p[11], fw = p[12], top = p[13], left = p[14];
  std::memset(dx, 0, sizeof(float) * N * H * W * C);
  // Parallel over images: windows of one image may overlap, images never do.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < N; b++) {
    std::vector<float> best(C);
    std::vector<int64_t> bestAt(C);
    const int64_t xb = b * H * W * C;
    for (int64_t oy = 0; oy < OH; oy++) {
      for (int64_t ox = 0; ox < OW; ox++) {
        std::fill(bestAt.begin(), bestAt.end(), -1);
        for (int ky = 0; ky < fh; ky++) {
          const int64_t y = oy * sh - top + ky;
          if (y < 0 || y >= H) continue;
          for (int kx = 0; kx < fw; kx++) {
            const int64_t xx = ox * sw - left + kx;
            if (xx < 0 || xx >= W) continue;
            const int64_t base = xb + (y * W + xx) * C;
            for (int64_t c = 0; c < C; c++) {
              const float v = x[base + c];
              if (bestAt[c] < 0 || v > best[c]) {
                best[c] = v;
                bestAt[c] = base + c;
              }
            }
          }
        }
        const int64_t dyb = ((b * OH + oy) * OW + ox) * C;
        for (int64_t c = 0; c < C; c++)
          if (bestAt[c] >= 0) dx[bestAt[c]] += dy[dyb + c];
      }
    }
  }
  return nullptr;
}

float asFloat(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Training-mode batch norm over [rows, C] (NHWC): statistics in double, two passes.
// 0 xOff 1 gammaOff 2 betaOff 3 yOff 4 meanOff 5 varOff 6 rows 7 C 8 eps (float bits)
// The batch norm as y = x * scale + shift per channel, from its statistics.
void affineOf(const float* gamma, const float* beta, const float* mean, const float* var, double eps, int64_t C, float* scale, float* shift) {
  for (int64_t c = 0; c < C; c++) {
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(static_cast<double>(var[c]) + eps));
    shift[c] = beta[c] - mean[c] * scale[c];
  }
}

napi_value BatchNormForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const float* x = at(a, p[0]);
  const float* gamma = at(a, p[1]);
  const float* beta = at(a, p[2]);
  float* y = at(a, p[3]);
  float* meanOut = at(a, p[4]);
  float* varOut = at(a, p[5]);
  const int64_t rows = p[6], C = p[7];
  const double eps = asFloat(p[8]);
  const bool relu = a.paramCount > 9 && p[9] != 0;
  const std::vector<double> sum = channelSums(rows, C, 1, [&](int64_t r, double* acc) {
    for (int64_t c = 0; c < C; c++) acc[c] += x[r * C + c];
  });
  std::vector<float> mean(C), scale(C), shift(C);
  for (int64_t c = 0; c < C; c++) mean[c] = static_cast<float>(sum[c] / rows);
  const std::vector<double> sq = channelSums(rows, C, 1, [&](int64_t r, double* acc) {
    for (int64_t c = 0; c < C; c++) {
      const double d = x[r * C + c] - mean[c];
      acc[c] += d * d;
    }
  });
  for (int64_t c = 0; c < C; c++) {
    meanOut[c] = mean[c];
    varOut[c] = static_cast<float>(sq[c] / rows);
  }
  // From the outputs, as the gradient recomputes them (its ReLU mask then matches this one).
  affineOf(gamma, beta, meanOut, varOut, eps, C, scale.data(), shift.data());
  if (relu) {
#pragma omp parallel for schedule(static) if (rows * C > 65536)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < C; c++) y[r * C + c] = std::max(0.f, x[r * C + c] * scale[c] + shift[c]);
  } else {
#pragma omp parallel for schedule(static) if (rows * C > 65536)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * scale[c] + shift[c];
  }
  return nullptr;
}

// Its gradient: dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * rstd * (dy - (dbeta + xhat * dgamma) / rows)
// 0 xOff 1 gammaOff 2 meanOff 3 varOff 4 dyOff 5 dxOff 6 dgammaOff 7 dbetaOff 8 rows 9 C 10 eps
// [11 betaOff 12 relu]: with relu, dy is first zeroed where the forward's pre-activation
// (recomputed as the forward computed it) was <= 0, into dx (then read in place).
napi_value BatchNormBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* p = a.params;
  const float* x = at(a, p[0]);
  const float* gamma = at(a, p[1]);
  const float* mean = at(a, p[2]);
  const float* var = at(a, p[3]);
  const float* dy = at(a, p[4]);
  float* dx = at(a, p[5]);
  float* dgamma = at(a, p[6]);
  float* dbeta = at(a, p[7]);
  const int64_t rows = p[8], C = p[9];
  const double eps = asFloat(p[10]);
  if (a.paramCount > 12 && p[12] != 0) {
    const float* beta = at(a, p[11]);
    std::vector<float> scale(C), shift(C);
    affineOf(gamma, beta, mean, var, eps, C, scale.data(), shift.data());
#pragma omp parallel for schedule(static) if (rows * C > 65536)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < C; c++) {
        const int64_t i = r * C + c;
        dx[i] = x[i] * scale[c] + shift[c] > 0.f ? dy[i] : 0.f;
      }
    dy = dx;
  }
  std::vector<float> rstd(C);
  for (int64_t c = 0; c < C; c++) rstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
  // Row r adds dy to sums[0][c] and dy * xhat to sums[1][c].
  const std::vector<double> sums = channelSums(rows, C, 2, [&](int64_t r, double* acc) {
    for (int64_t c = 0; c < C; c++) {
      const float g = dy[r * C + c];
      acc[c] += g;
      acc[C + c] += g * (x[r * C + c] - mean[c]) * rstd[c];
    }
  });
  const double* sdy = sums.data();
  const double* sdyx = sums.data() + C;
  std::vector<float> k1(C), k2(C), k3(C);
  for (int64_t c = 0; c < C; c++) {
    dbeta[c] = static_cast<float>(sdy[c]);
    dgamma[c] = static_cast<float>(sdyx[c]);
    k1[c] = gamma[c] * rstd[c];
    k2[c] = static_cast<float>(sdy[c] / rows);
    k3[c] = static_cast<float>(sdyx[c] / rows) * rstd[c];
  }
#pragma omp parallel for schedule(static) if (rows * C > 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t i = r * C + c;
      dx[i] = k1[c] * (dy[i] - k2[c] - (x[i] - mean[c]) * k3[c]);
    }
  return nullptr;
}

// Fused SGD (momentum, weight decay; PyTorch semantics) and EMA teacher update, in place:
//   g' = g + wd p;  v = first ? g' : mu v + g';  p -= lr v;  t = m t + (1 - m) p
// 0 pOff 1 gOff 2 vOff 3 tOff 4 n 5 lr 6 mu 7 wd 8 m (float bits) 9 first 10 hasTeacher
napi_value SgdEma(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* q = a.params;
  float* p = at(a, q[0]);
  const float* g = at(a, q[1]);
  float* v = at(a, q[2]);
  float* t = q[10] != 0 ? at(a, q[3]) : nullptr;
  const int64_t n = q[4];
  const float lr = asFloat(q[5]), mu = asFloat(q[6]), wd = asFloat(q[7]), m = asFloat(q[8]);
  const bool first = q[9] != 0;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i] + wd * p[i];
    const float vi = first ? gi : mu * v[i] + gi;
    v[i] = vi;
    const float pi = p[i] - lr * vi;
    p[i] = pi;
    if (t) t[i] = m * t[i] + (1.0f - m) * pi;
  }
  return nullptr;
}

// Adam (TF.js semantics), in place: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr (m / c1) / (sqrt(v / c2) + eps), with the bias corrections c1 = 1 - b1^t, c2 = 1 - b2^t
// 0 pOff 1 gOff 2 mOff 3 vOff 4 n 5 lr 6 b1 7 b2 8 eps 9 c1 10 c2 (float bits)
napi_value Adam(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, a)) return nullptr;
  const int32_t* q = a.params;
  float* p = at(a, q[0]);
  const float* g = at(a, q[1]);
  float* m = at(a, q[2]);
  float* v = at(a, q[3]);
  const int64_t n = q[4];
  const float lr = asFloat(q[5]), b1 = asFloat(q[6]), b2 = asFloat(q[7]), eps = asFloat(q[8]), c1 = asFloat(q[9]), c2 = asFloat(q[10]);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi / c1) / (std::sqrt(vi / c2) + eps);
  }
  return nullptr;
}

napi_value Version(napi_env env, napi_callback_info) {
  const dnnl_version_t* v = dnnl_version();
  std::string s = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  napi_value out;
  napi_create_string_utf8(env, s.c_str(), s.size(), &out);
  return out;
}

// setThreads(n): threads of oneDNN and of the OpenMP loops here (both use libgomp). Returns the
// number now in effect.
napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t n = 0;
  if (argc >= 1) NAPI_CALL(env, napi_get_value_int32(env, argv[0], &n));
  if (n > 0) omp_set_num_threads(n);
  napi_value out;
  NAPI_CALL(env, napi_create_int32(env, omp_get_max_threads(), &out));
  return out;
}

// callCounts(): { conv2d: n, ... } since the addon was loaded.
napi_value CallCounts(napi_env env, napi_callback_info) {
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  for (size_t i = 0; i < kKernelCount; i++) {
    napi_value n;
    NAPI_CALL(env, napi_create_double(env, static_cast<double>(gCalls[i].load()), &n));
    NAPI_CALL(env, napi_set_named_property(env, out, kKernelNames[i], n));
  }
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_callback kernels[kKernelCount] = {Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter, MatMul, ReduceRows, Binary, MaxPoolGrad, BatchNormForward, BatchNormBackward, SgdEma, Adam, FusedConv2D, ConcatChannels, Slice};
  napi_property_descriptor props[kKernelCount + 3];
  for (size_t i = 0; i < kKernelCount; i++) props[i] = {kKernelNames[i], nullptr, kernels[i], nullptr, nullptr, nullptr, napi_default, &gCalls[i]};
  props[kKernelCount] = {"version", nullptr, Version, nullptr, nullptr, nullptr, napi_default, nullptr};
  props[kKernelCount + 1] = {"callCounts", nullptr, CallCounts, nullptr, nullptr, nullptr, napi_default, nullptr};
  props[kKernelCount + 2] = {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr};
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  // Addons built before it ignore a ReLU flag: the JS side asks before passing one.
  napi_value yes;
  NAPI_CALL(env, napi_get_boolean(env, true, &yes));
  NAPI_CALL(env, napi_set_named_property(env, exports, "batchNormRelu", yes));
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
