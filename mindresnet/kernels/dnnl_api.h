// The part of oneDNN's C API (v3.x) that mindresnet's CPU kernels call, declared here so that the
// kernels build without oneDNN's headers against the libdnnl.so.3 MindSpore ships (v3.10.1).
// Values copied from oneDNN's headers; identical in v3.9.1 and v3.11.2 (checked when written).
// build.py only loads the kernels on a oneDNN version listed in SUPPORTED_ONEDNN.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

extern "C" {
typedef int dnnl_status_t;  // dnnl_success == 0
typedef int64_t dnnl_dims_t[12];
typedef struct dnnl_engine *dnnl_engine_t;
typedef struct dnnl_stream *dnnl_stream_t;
typedef struct dnnl_memory_desc *dnnl_memory_desc_t;
typedef const struct dnnl_memory_desc *const_dnnl_memory_desc_t;
typedef struct dnnl_memory *dnnl_memory_t;
typedef struct dnnl_primitive_desc *dnnl_primitive_desc_t;
typedef const struct dnnl_primitive_desc *const_dnnl_primitive_desc_t;
typedef struct dnnl_primitive *dnnl_primitive_t;
typedef const struct dnnl_primitive *const_dnnl_primitive_t;
typedef struct dnnl_primitive_attr *dnnl_primitive_attr_t;
typedef const struct dnnl_primitive_attr *const_dnnl_primitive_attr_t;
typedef struct { int arg; dnnl_memory_t memory; } dnnl_exec_arg_t;
typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; } dnnl_version_t;

enum { dnnl_success = 0, dnnl_cpu = 1, dnnl_f32 = 3 };
enum { dnnl_format_tag_any = 1, dnnl_abcd = 5, dnnl_abcde = 6 };  // abcd: nchw/oihw, abcde: goihw
enum { dnnl_forward_training = 64, dnnl_forward_inference = 96, dnnl_backward_data = 160,
       dnnl_backward_weights = 192 };
enum { dnnl_convolution_direct = 1 };
enum { dnnl_query_impl_info_str = 8, dnnl_query_src_md = 129, dnnl_query_diff_src_md = 130,
       dnnl_query_weights_md = 131, dnnl_query_diff_weights_md = 132, dnnl_query_dst_md = 133,
       dnnl_query_diff_dst_md = 134, dnnl_query_scratchpad_md = 136 };
enum { DNNL_ARG_SRC = 1, DNNL_ARG_DST = 17, DNNL_ARG_WEIGHTS = 33, DNNL_ARG_SCRATCHPAD = 80,
       DNNL_ARG_DIFF_SRC = 129, DNNL_ARG_DIFF_DST = 145, DNNL_ARG_DIFF_WEIGHTS = 161,
       DNNL_ARG_FROM = 1, DNNL_ARG_TO = 17 };
enum { dnnl_scratchpad_mode_user = 1 };
#define DNNL_MEMORY_NONE (NULL)

const dnnl_version_t *dnnl_version(void);
dnnl_status_t dnnl_engine_create(dnnl_engine_t *engine, int kind, size_t index);
dnnl_status_t dnnl_threadpool_interop_stream_create(dnnl_stream_t *stream, dnnl_engine_t engine, void *threadpool);
dnnl_status_t dnnl_threadpool_interop_set_max_concurrency(int max_concurrency);
dnnl_status_t dnnl_stream_wait(dnnl_stream_t stream);
dnnl_status_t dnnl_memory_desc_create_with_tag(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                                               int data_type, int tag);
dnnl_status_t dnnl_memory_desc_destroy(dnnl_memory_desc_t md);
int dnnl_memory_desc_equal(const_dnnl_memory_desc_t lhs, const_dnnl_memory_desc_t rhs);
size_t dnnl_memory_desc_get_size(const_dnnl_memory_desc_t md);
dnnl_status_t dnnl_memory_create(dnnl_memory_t *memory, const_dnnl_memory_desc_t md, dnnl_engine_t engine,
                                 void *handle);
dnnl_status_t dnnl_memory_set_data_handle(dnnl_memory_t memory, void *handle);
dnnl_status_t dnnl_memory_destroy(dnnl_memory_t memory);
dnnl_status_t dnnl_primitive_attr_create(dnnl_primitive_attr_t *attr);
dnnl_status_t dnnl_primitive_attr_set_scratchpad_mode(dnnl_primitive_attr_t attr, int mode);
dnnl_status_t dnnl_primitive_attr_destroy(dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_convolution_forward_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int prop_kind, int alg_kind, const_dnnl_memory_desc_t src,
    const_dnnl_memory_desc_t weights, const_dnnl_memory_desc_t bias, const_dnnl_memory_desc_t dst,
    const dnnl_dims_t strides, const dnnl_dims_t dilates, const dnnl_dims_t padding_l, const dnnl_dims_t padding_r,
    const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_convolution_backward_data_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int alg_kind, const_dnnl_memory_desc_t diff_src,
    const_dnnl_memory_desc_t weights, const_dnnl_memory_desc_t diff_dst, const dnnl_dims_t strides,
    const dnnl_dims_t dilates, const dnnl_dims_t padding_l, const dnnl_dims_t padding_r,
    const_dnnl_primitive_desc_t hint_fwd_pd, const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_convolution_backward_weights_primitive_desc_create(
    dnnl_primitive_desc_t *pd, dnnl_engine_t engine, int alg_kind, const_dnnl_memory_desc_t src,
    const_dnnl_memory_desc_t diff_weights, const_dnnl_memory_desc_t diff_bias, const_dnnl_memory_desc_t diff_dst,
    const dnnl_dims_t strides, const dnnl_dims_t dilates, const dnnl_dims_t padding_l, const dnnl_dims_t padding_r,
    const_dnnl_primitive_desc_t hint_fwd_pd, const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_reorder_primitive_desc_create(dnnl_primitive_desc_t *pd, const_dnnl_memory_desc_t src_md,
                                                 dnnl_engine_t src_engine, const_dnnl_memory_desc_t dst_md,
                                                 dnnl_engine_t dst_engine, const_dnnl_primitive_attr_t attr);
const_dnnl_memory_desc_t dnnl_primitive_desc_query_md(const_dnnl_primitive_desc_t pd, int what, int index);
dnnl_status_t dnnl_primitive_desc_query(const_dnnl_primitive_desc_t pd, int what, int index, void *result);
dnnl_status_t dnnl_primitive_desc_destroy(dnnl_primitive_desc_t pd);
dnnl_status_t dnnl_primitive_create(dnnl_primitive_t *primitive, const_dnnl_primitive_desc_t pd);
dnnl_status_t dnnl_primitive_execute(const_dnnl_primitive_t primitive, dnnl_stream_t stream, int nargs,
                                     const dnnl_exec_arg_t *args);
}

namespace dnnl { namespace threadpool_interop {
// oneDNN's threadpool_iface in the layout of v3.11 (which appended wait()); v3.10 calls only the
// first four methods, so the same object serves both.
struct threadpool_iface {
    virtual int get_num_threads() const = 0;
    virtual bool get_in_parallel() const = 0;
    virtual void parallel_for(int n, const std::function<void(int, int)> &fn) = 0;
    virtual uint64_t get_flags() const = 0;
    virtual void wait() = 0;
    virtual ~threadpool_iface() = default;
};
}}  // namespace dnnl::threadpool_interop
