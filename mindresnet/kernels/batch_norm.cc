// Batch normalisation of NCHW float32 tensors for MindSpore's CPU backend: training and inference.
//
// MindSpore 2.10 runs BatchNorm and BatchNormGrad on oneDNN's plain-layout reference-style batch
// norm (ncsp_bnorm), whose backward is about 3x PyTorch's (bench/kernels.py). These kernels loop
// over blocks of channels with the compiler's vector code, blocks spread over the shared pool.
// AOT custom ops (see dnnl_conv.cc for the calling convention); `config` is a float32 {eps, momentum}
// with MindSpore's momentum (the batch's weight). The forward pass updates the moving statistics in
// place, as MindSpore's own BatchNorm kernel does (the variance unbiased, n / (n - 1)).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "thread_pool.h"

namespace {

struct Shape {
  int64_t batch, channels, pixels;
};

Shape shape_of(const int64_t *dims) { return {dims[0], dims[1], dims[2] * dims[3]}; }

constexpr int64_t kBlockBytes = 1 << 20;  // of one tensor (the fastest of 1 KB-1 MB on a Zen 4 EPYC)

// Runs fn(first, end) for blocks of channels [first, end) on the shared pool, images walked in memory
// order inside a block: a kernel's passes over a block then stay in the core's cache, and each image's
// part of the block is one contiguous run. (Walking one channel at a time, jumping channels * pixels
// floats between images, made the backward on 8x8 maps 6x slower than the forward: cache-set
// conflicts at the 64 KB stride.)
template <typename Fn>
void each_channel_block(const Shape &s, Fn fn) {
  const int64_t per_channel = std::max<int64_t>(1, s.batch * s.pixels * static_cast<int64_t>(sizeof(float)));
  std::lock_guard<std::mutex> lock(mindresnet::kernel_mutex());
  mindresnet::ThreadPool &pool = mindresnet::shared_pool();
  const int64_t at_least_two_per_thread = s.channels / (2 * pool.get_num_threads());
  const int64_t block = std::max<int64_t>(1, std::min(kBlockBytes / per_channel, at_least_two_per_thread));
  const int64_t blocks = (s.channels + block - 1) / block;
  pool.parallel_for(pool.get_num_threads(), [&](int task, int total) {
    for (int64_t b = task; b < blocks; b += total) fn(b * block, std::min(s.channels, (b + 1) * block));
  });
}

// row(offset of the (n, c) row, c - first) for every image n, then every channel c of [first, end).
template <typename Row>
void each_row(const Shape &s, int64_t first, int64_t end, Row row) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = first; c < end; ++c) row((n * s.channels + c) * s.pixels, c - first);
}

// y = x * scale[c - first] + shift[c - first] on every row of the channels [first, end).
void scale_and_shift(const Shape &s, int64_t first, int64_t end, const float *x, float *y, const float *scale,
                     const float *shift) {
  each_row(s, first, end, [&](int64_t at, int64_t k) {
    const float *row = x + at, a = scale[k], b = shift[k];
    float *out = y + at;
#pragma omp simd
    for (int64_t i = 0; i < s.pixels; ++i) out[i] = row[i] * a + b;
  });
}

bool all_float(const char **dtypes, int n) {
  for (int i = 0; i < n; ++i)
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

}  // namespace

extern "C" {

// params: x, gamma, beta, moving mean, moving variance, config -> y, batch mean, batch variance (biased).
int batch_norm_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                       void *) {
  if (nparam != 9 || ndims[0] != 4 || !all_float(dtypes, 9)) return 10;
  const Shape s = shape_of(shapes[0]);
  const int64_t pixels = s.pixels;
  const float *x = static_cast<const float *>(params[0]), *gamma = static_cast<const float *>(params[1]),
              *beta = static_cast<const float *>(params[2]);
  float *moving_mean = static_cast<float *>(params[3]), *moving_var = static_cast<float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0], momentum = static_cast<const float *>(params[5])[1];
  float *y = static_cast<float *>(params[6]), *mean_out = static_cast<float *>(params[7]),
        *var_out = static_cast<float *>(params[8]);
  const double count = static_cast<double>(s.batch * s.pixels);
  const float unbiased = count > 1 ? static_cast<float>(count / (count - 1)) : 1.f;
  each_channel_block(s, [&](int64_t first, int64_t end) {
    std::vector<double> sum(end - first, 0.0), squares(end - first, 0.0);
    std::vector<float> mean(end - first), scale(end - first), shift(end - first);
    each_row(s, first, end, [&](int64_t at, int64_t k) {
      const float *row = x + at;
      float part = 0.f;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < pixels; ++i) part += row[i];
      sum[k] += part;
    });
    for (int64_t k = 0; k < end - first; ++k) mean[k] = static_cast<float>(sum[k] / count);
    each_row(s, first, end, [&](int64_t at, int64_t k) {
      const float *row = x + at, m = mean[k];
      float part = 0.f;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < pixels; ++i) part += (row[i] - m) * (row[i] - m);
      squares[k] += part;
    });
    for (int64_t k = 0, c = first; c < end; ++k, ++c) {
      const float var = static_cast<float>(squares[k] / count);
      scale[k] = gamma[c] / std::sqrt(var + eps);
      shift[k] = beta[c] - mean[k] * scale[k];
      mean_out[c] = mean[k];
      var_out[c] = var;
      moving_mean[c] = moving_mean[c] * (1.f - momentum) + mean[k] * momentum;
      moving_var[c] = moving_var[c] * (1.f - momentum) + var * unbiased * momentum;
    }
    scale_and_shift(s, first, end, x, y, scale.data(), shift.data());
  });
  return 0;
}

// params: x, gamma, beta, moving mean, moving variance, config -> y (inference: the moving statistics).
int batch_norm_inference(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                         void *) {
  if (nparam != 7 || ndims[0] != 4 || !all_float(dtypes, 7)) return 10;
  const Shape s = shape_of(shapes[0]);
  const float *x = static_cast<const float *>(params[0]), *gamma = static_cast<const float *>(params[1]),
              *beta = static_cast<const float *>(params[2]), *mean = static_cast<const float *>(params[3]),
              *var = static_cast<const float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0];
  float *y = static_cast<float *>(params[6]);
  each_channel_block(s, [&](int64_t first, int64_t end) {
    std::vector<float> scale(end - first), shift(end - first);
    for (int64_t k = 0, c = first; c < end; ++k, ++c) {
      scale[k] = gamma[c] / std::sqrt(var[c] + eps);
      shift[k] = beta[c] - mean[c] * scale[k];
    }
    scale_and_shift(s, first, end, x, y, scale.data(), shift.data());
  });
  return 0;
}

// params: dy, x, gamma, batch mean, batch variance, config -> dx, dgamma, dbeta.
int batch_norm_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                        void *) {
  if (nparam != 9 || ndims[0] != 4 || !all_float(dtypes, 9)) return 10;
  const Shape s = shape_of(shapes[0]);
  const int64_t pixels = s.pixels;
  const float *dy = static_cast<const float *>(params[0]), *x = static_cast<const float *>(params[1]),
              *gamma = static_cast<const float *>(params[2]), *mean = static_cast<const float *>(params[3]),
              *var = static_cast<const float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0];
  float *dx = static_cast<float *>(params[6]), *dgamma = static_cast<float *>(params[7]),
        *dbeta = static_cast<float *>(params[8]);
  const double count = static_cast<double>(s.batch * s.pixels);
  each_channel_block(s, [&](int64_t first, int64_t end) {
    std::vector<double> sum_dy(end - first, 0.0), sum_dy_xc(end - first, 0.0);  // xc: x - mean
    std::vector<float> scale(end - first), mean_dy(end - first), slope(end - first);
    each_row(s, first, end, [&](int64_t at, int64_t k) {
      const float *grad = dy + at, *row = x + at, m = mean[first + k];
      float part_dy = 0.f, part_dy_xc = 0.f;
#pragma omp simd reduction(+ : part_dy, part_dy_xc)
      for (int64_t i = 0; i < pixels; ++i) {
        part_dy += grad[i];
        part_dy_xc += grad[i] * (row[i] - m);
      }
      sum_dy[k] += part_dy;
      sum_dy_xc[k] += part_dy_xc;
    });
    // dx = gamma * invstd * (dy - mean(dy) - xc * invstd^2 * mean(dy * xc))
    for (int64_t k = 0, c = first; c < end; ++k, ++c) {
      const float invstd = 1.f / std::sqrt(var[c] + eps);
      dgamma[c] = static_cast<float>(sum_dy_xc[k]) * invstd;
      dbeta[c] = static_cast<float>(sum_dy[k]);
      scale[k] = gamma[c] * invstd;
      mean_dy[k] = static_cast<float>(sum_dy[k] / count);
      slope[k] = static_cast<float>(sum_dy_xc[k] / count) * invstd * invstd;
    }
    each_row(s, first, end, [&](int64_t at, int64_t k) {
      const float *grad = dy + at, *row = x + at, a = scale[k], b = mean_dy[k], slope_k = slope[k], m = mean[first + k];
      float *out = dx + at;
#pragma omp simd
      for (int64_t i = 0; i < pixels; ++i) out[i] = a * (grad[i] - b - (row[i] - m) * slope_k);
    });
  });
  return 0;
}

}  // extern "C"
