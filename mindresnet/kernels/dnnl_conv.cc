// Convolutions for MindSpore's CPU backend on oneDNN's blocked-layout jit kernels.
//
// MindSpore 2.10 hands oneDNN plain nchw/oihw tensors, for which oneDNN 3.10 on AVX-512 has only
// its reference kernel (and GEMM under an AVX2 cap). Asked with format_tag::any, the same
// libdnnl.so.3 picks its blocked jit kernels; these functions reorder MindSpore's plain tensors to
// and from the layouts oneDNN chooses around each convolution. They are MindSpore AOT custom ops:
//   int f(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// with the inputs, then the outputs, in params. Every tensor is float32 except `config`, an int64
// vector {stride_h, stride_w, pad_top, pad_left, groups, plain}; `plain` keeps every tensor in
// MindSpore's layout (no reorders: oneDNN's GEMM convolution, which wins for pointwise ones on AVX2).
// Primitives are cached per shape; calls are serialised (thread_pool.h: one pool, shared scratch buffers).
// Weights' blocked copies are kept only between mindresnet_freeze_weights(1) and (0).
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <mutex>
#include <vector>

#include "dnnl_api.h"
#include "thread_pool.h"

namespace {

using mindresnet::kernel_mutex;

struct Runtime {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
};

Runtime g_rt;

bool ensure_runtime() {
  if (g_rt.stream) return true;
  mindresnet::ThreadPool &pool = mindresnet::shared_pool();
  if (dnnl_engine_create(&g_rt.engine, dnnl_cpu, 0) != dnnl_success) return false;
  dnnl_threadpool_interop_set_max_concurrency(pool.get_num_threads());
  return dnnl_threadpool_interop_stream_create(&g_rt.stream, g_rt.engine, &pool) == dnnl_success;
}

// A 64-byte aligned buffer that only grows.
struct Buffer {
  void *data = nullptr;
  size_t size = 0;
  void *get(size_t bytes) {
    if (bytes > size) {
      std::free(data);
      size = (bytes + 63) / 64 * 64;
      data = std::aligned_alloc(64, size);
    }
    return data;
  }
};
Buffer g_buffers[4];  // the blocked copies of up to three tensors, and oneDNN's scratchpad

// A tensor as MindSpore holds it (plain), and as the primitive wants it.
struct Operand {
  dnnl_memory_t user = nullptr, blocked = nullptr;
  dnnl_primitive_t to_blocked = nullptr, to_user = nullptr;  // null when the layouts agree
  size_t blocked_size = 0;
};

enum Kind { FORWARD = 0, BACKWARD_DATA = 1, BACKWARD_WEIGHTS = 2 };

struct Conv {
  dnnl_primitive_t primitive = nullptr;
  Operand operands[3];
  int arg_ids[3];
  dnnl_memory_t scratchpad = nullptr;
  size_t scratchpad_size = 0;
  bool ok = false;
};

std::map<std::vector<int64_t>, Conv> g_cache;

// While weights are frozen (mindresnet_freeze_weights), a forward convolution keeps its weights'
// blocked copy, keyed by the primitive and the weights' address, instead of reordering them every call.
bool g_weights_frozen = false;
std::map<std::pair<const Conv *, const void *>, Buffer> g_frozen_weights;

void release_frozen_weights() {
  for (auto &entry : g_frozen_weights) std::free(entry.second.data);
  g_frozen_weights.clear();
}

// A tensor's descriptor in MindSpore's plain layout, or (`any`) in whatever layout oneDNN prefers.
// Weights of a grouped convolution: MindSpore's (O, C/g, kh, kw) is goihw's memory.
dnnl_memory_desc_t describe(const int64_t *shape, int groups, bool any) {
  dnnl_dims_t dims = {0};
  int ndims = 4;
  if (groups > 1) {
    int64_t grouped[5] = {groups, shape[0] / groups, shape[1], shape[2], shape[3]};
    for (int i = 0; i < 5; ++i) dims[i] = grouped[i];
    ndims = 5;
  } else {
    for (int i = 0; i < 4; ++i) dims[i] = shape[i];
  }
  dnnl_memory_desc_t md = nullptr;
  dnnl_memory_desc_create_with_tag(&md, ndims, dims, dnnl_f32,
                                   any ? dnnl_format_tag_any : (ndims == 5 ? dnnl_abcde : dnnl_abcd));
  return md;
}



// Builds the reorders between MindSpore's plain layout and the primitive's; `input` says which way.
bool make_operand(Operand &op, const_dnnl_memory_desc_t user_md, const_dnnl_memory_desc_t prim_md, bool input) {
  if (dnnl_memory_create(&op.user, user_md, g_rt.engine, DNNL_MEMORY_NONE) != dnnl_success) return false;
  if (dnnl_memory_desc_equal(user_md, prim_md)) return true;
  if (dnnl_memory_create(&op.blocked, prim_md, g_rt.engine, DNNL_MEMORY_NONE) != dnnl_success) return false;
  op.blocked_size = dnnl_memory_desc_get_size(prim_md);
  dnnl_primitive_desc_t pd = nullptr;
  const_dnnl_memory_desc_t from = input ? user_md : prim_md, to = input ? prim_md : user_md;
  if (dnnl_reorder_primitive_desc_create(&pd, from, g_rt.engine, to, g_rt.engine, nullptr) != dnnl_success)
    return false;
  dnnl_status_t status = dnnl_primitive_create(input ? &op.to_blocked : &op.to_user, pd);
  dnnl_primitive_desc_destroy(pd);
  return status == dnnl_success;
}

// shapes: x (N, C, H, W), w (O, C/g, kh, kw), y (N, O, Ho, Wo).
bool build(Conv &conv, Kind kind, const int64_t *x, const int64_t *w, const int64_t *y, const int64_t *cfg) {
  int groups = static_cast<int>(cfg[4]);
  dnnl_dims_t strides = {cfg[0], cfg[1]}, pad_l = {cfg[2], cfg[3]}, pad_r = {0, 0};
  for (int i = 0; i < 2; ++i) {
    int64_t after = (y[2 + i] - 1) * cfg[i] + w[2 + i] - x[2 + i] - cfg[2 + i];
    pad_r[i] = after > 0 ? after : 0;
  }
  dnnl_memory_desc_t xp = describe(x, 1, false), wp = describe(w, groups, false), yp = describe(y, 1, false);
  bool any = cfg[5] == 0;
  dnnl_memory_desc_t xa = describe(x, 1, any), wa = describe(w, groups, any), ya = describe(y, 1, any);
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_primitive_attr_create(&attr);
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  dnnl_primitive_desc_t fwd = nullptr, pd = nullptr;
  bool ok = dnnl_convolution_forward_primitive_desc_create(
                &fwd, g_rt.engine, dnnl_forward_training,
                dnnl_convolution_direct, xa, wa, nullptr, ya, strides, nullptr, pad_l, pad_r, attr) == dnnl_success;
  if (ok && kind == FORWARD) {
    pd = fwd;
    fwd = nullptr;
  } else if (ok && kind == BACKWARD_DATA) {
    ok = dnnl_convolution_backward_data_primitive_desc_create(&pd, g_rt.engine, dnnl_convolution_direct, xa, wa,
                                                              ya, strides, nullptr, pad_l, pad_r, fwd,
                                                              attr) == dnnl_success;
  } else if (ok) {
    ok = dnnl_convolution_backward_weights_primitive_desc_create(&pd, g_rt.engine, dnnl_convolution_direct, xa,
                                                                 wa, nullptr, ya, strides, nullptr, pad_l, pad_r,
                                                                 fwd, attr) == dnnl_success;
  }
  if (ok) {
    // operands[0..1] are inputs, operands[2] the output, in the order of the op's params.
    struct { const_dnnl_memory_desc_t user; int query; int arg; } spec[3][3] = {
        {{xp, dnnl_query_src_md, DNNL_ARG_SRC}, {wp, dnnl_query_weights_md, DNNL_ARG_WEIGHTS},
         {yp, dnnl_query_dst_md, DNNL_ARG_DST}},
        {{yp, dnnl_query_diff_dst_md, DNNL_ARG_DIFF_DST}, {wp, dnnl_query_weights_md, DNNL_ARG_WEIGHTS},
         {xp, dnnl_query_diff_src_md, DNNL_ARG_DIFF_SRC}},
        {{xp, dnnl_query_src_md, DNNL_ARG_SRC}, {yp, dnnl_query_diff_dst_md, DNNL_ARG_DIFF_DST},
         {wp, dnnl_query_diff_weights_md, DNNL_ARG_DIFF_WEIGHTS}}};
    for (int i = 0; ok && i < 3; ++i) {
      const_dnnl_memory_desc_t prim_md = dnnl_primitive_desc_query_md(pd, spec[kind][i].query, 0);
      conv.arg_ids[i] = spec[kind][i].arg;
      ok = prim_md && make_operand(conv.operands[i], spec[kind][i].user, prim_md, i < 2);
    }
    const_dnnl_memory_desc_t scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    conv.scratchpad_size = scratch_md ? dnnl_memory_desc_get_size(scratch_md) : 0;
    if (ok && conv.scratchpad_size)
      ok = dnnl_memory_create(&conv.scratchpad, scratch_md, g_rt.engine, DNNL_MEMORY_NONE) == dnnl_success;
    ok = ok && dnnl_primitive_create(&conv.primitive, pd) == dnnl_success;
  }
  if (fwd) dnnl_primitive_desc_destroy(fwd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  for (dnnl_memory_desc_t md : {xp, wp, yp, xa, wa, ya}) dnnl_memory_desc_destroy(md);
  return ok;
}

int execute(Kind kind, void *in0, void *in1, void *out, const int64_t *x, const int64_t *w, const int64_t *y,
            const int64_t *cfg) {
  std::lock_guard<std::mutex> lock(kernel_mutex());
  if (!ensure_runtime()) return 1;
  std::vector<int64_t> key = {kind, cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]};
  key.insert(key.end(), x, x + 4);
  key.insert(key.end(), w, w + 4);
  key.insert(key.end(), y, y + 4);
  auto found = g_cache.find(key);
  if (found == g_cache.end()) {
    Conv &fresh = g_cache[key];
    fresh.ok = build(fresh, kind, x, w, y, cfg);
    found = g_cache.find(key);
  }
  Conv &conv = found->second;
  if (!conv.ok) return 2;
  void *data[3] = {in0, in1, out};
  dnnl_exec_arg_t args[4];
  int nargs = 0;
  for (int i = 0; i < 3; ++i) {
    Operand &op = conv.operands[i];
    dnnl_memory_set_data_handle(op.user, data[i]);
    bool reorder_needed = op.to_blocked != nullptr;
    if (op.blocked && kind == FORWARD && i == 1 && g_weights_frozen) {
      Buffer &kept = g_frozen_weights[{&conv, data[i]}];
      reorder_needed = kept.data == nullptr;
      dnnl_memory_set_data_handle(op.blocked, kept.get(op.blocked_size));
    } else if (op.blocked) {
      dnnl_memory_set_data_handle(op.blocked, g_buffers[i].get(op.blocked_size));
    }
    args[nargs++] = {conv.arg_ids[i], op.blocked ? op.blocked : op.user};
    if (reorder_needed) {
      dnnl_exec_arg_t reorder[2] = {{DNNL_ARG_FROM, op.user}, {DNNL_ARG_TO, op.blocked}};
      if (dnnl_primitive_execute(op.to_blocked, g_rt.stream, 2, reorder) != dnnl_success) return 3;
    }
  }
  if (conv.scratchpad) {
    dnnl_memory_set_data_handle(conv.scratchpad, g_buffers[3].get(conv.scratchpad_size));
    args[nargs++] = {DNNL_ARG_SCRATCHPAD, conv.scratchpad};
  }
  if (dnnl_primitive_execute(conv.primitive, g_rt.stream, nargs, args) != dnnl_success) return 4;
  Operand &result = conv.operands[2];
  if (result.to_user) {
    dnnl_exec_arg_t reorder[2] = {{DNNL_ARG_FROM, result.blocked}, {DNNL_ARG_TO, result.user}};
    if (dnnl_primitive_execute(result.to_user, g_rt.stream, 2, reorder) != dnnl_success) return 5;
  }
  return dnnl_stream_wait(g_rt.stream) == dnnl_success ? 0 : 6;
}

// Whether an op got `expected` params whose `tensors` are 4-D float32 (the config is not among them).
bool valid(int nparam, int expected, const int *ndims, const char **dtypes, std::initializer_list<int> tensors) {
  if (nparam != expected) return false;
  for (int i : tensors)
    if (ndims[i] != 4 || std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

}  // namespace

extern "C" {

// Sets the thread count of the kernels' pool (before their first call); returns 0.
int mindresnet_set_threads(int threads) {
  std::lock_guard<std::mutex> lock(kernel_mutex());
  mindresnet::kernel_threads() = threads;
  return 0;
}

// Freezes (1) or thaws (0) every convolution's weights: while frozen, forward convolutions reuse their
// weights' blocked copies; thawing frees them. The caller guarantees that no weight changes meanwhile.
int mindresnet_freeze_weights(int frozen) {
  std::lock_guard<std::mutex> lock(kernel_mutex());
  g_weights_frozen = frozen != 0;
  if (!g_weights_frozen) release_frozen_weights();
  return 0;
}

// params: x, weight, config -> y.
int conv_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!valid(nparam, 4, ndims, dtypes, {0, 1, 3})) return 10;
  return execute(FORWARD, params[0], params[1], params[3], shapes[0], shapes[1], shapes[3],
                 static_cast<int64_t *>(params[2]));
}

// params: dy, weight, x (for its shape), config -> dx.
int conv_backward_data(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                       void *) {
  if (!valid(nparam, 5, ndims, dtypes, {0, 1, 2, 4})) return 10;
  return execute(BACKWARD_DATA, params[0], params[1], params[4], shapes[4], shapes[1], shapes[0],
                 static_cast<int64_t *>(params[3]));
}

// params: x, dy, weight (for its shape), config -> dweight.
int conv_backward_weights(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                          void *) {
  if (!valid(nparam, 5, ndims, dtypes, {0, 1, 2, 4})) return 10;
  return execute(BACKWARD_WEIGHTS, params[0], params[1], params[4], shapes[0], shapes[4], shapes[1],
                 static_cast<int64_t *>(params[3]));
}

}  // extern "C"
