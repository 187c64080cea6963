// Training-mode batch normalisation of NCHW float32 tensors for MindSpore's CPU backend.
//
// MindSpore 2.10 runs BatchNorm and BatchNormGrad on oneDNN's plain-layout reference-style batch
// norm (ncsp_bnorm), whose backward is about 3x PyTorch's (bench/kernels.py). These kernels loop
// over each channel's rows with the compiler's vector code, channels spread over the shared pool.
// AOT custom ops (see dnnl_conv.cc for the calling convention); `config` is a float32 {eps, momentum}
// with MindSpore's momentum (the batch's weight). The forward pass updates the moving statistics in
// place, as MindSpore's own BatchNorm kernel does (the variance unbiased, n / (n - 1)).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "thread_pool.h"

namespace {

struct Shape {
  int64_t batch, channels, pixels;
};

Shape shape_of(const int64_t *dims) { return {dims[0], dims[1], dims[2] * dims[3]}; }

// Runs fn(channel) for every channel on the shared pool.
template <typename Fn>
void each_channel(int64_t channels, Fn fn) {
  std::lock_guard<std::mutex> lock(mindresnet::kernel_mutex());
  mindresnet::ThreadPool &pool = mindresnet::shared_pool();
  int tasks = pool.get_num_threads();
  pool.parallel_for(tasks, [&](int task, int total) {
    for (int64_t c = task; c < channels; c += total) fn(c);
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
  const float *x = static_cast<const float *>(params[0]), *gamma = static_cast<const float *>(params[1]),
              *beta = static_cast<const float *>(params[2]);
  float *moving_mean = static_cast<float *>(params[3]), *moving_var = static_cast<float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0], momentum = static_cast<const float *>(params[5])[1];
  float *y = static_cast<float *>(params[6]), *mean_out = static_cast<float *>(params[7]),
        *var_out = static_cast<float *>(params[8]);
  const double count = static_cast<double>(s.batch * s.pixels);
  const float unbiased = count > 1 ? static_cast<float>(count / (count - 1)) : 1.f;
  each_channel(s.channels, [&](int64_t c) {
    double sum = 0.0;
    for (int64_t n = 0; n < s.batch; ++n) {
      const float *row = x + (n * s.channels + c) * s.pixels;
      float part = 0.f;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < s.pixels; ++i) part += row[i];
      sum += part;
    }
    const float mean = static_cast<float>(sum / count);
    double squares = 0.0;
    for (int64_t n = 0; n < s.batch; ++n) {
      const float *row = x + (n * s.channels + c) * s.pixels;
      float part = 0.f;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < s.pixels; ++i) part += (row[i] - mean) * (row[i] - mean);
      squares += part;
    }
    const float var = static_cast<float>(squares / count);
    const float scale = gamma[c] / std::sqrt(var + eps), shift = beta[c] - mean * scale;
    for (int64_t n = 0; n < s.batch; ++n) {
      const float *row = x + (n * s.channels + c) * s.pixels;
      float *out = y + (n * s.channels + c) * s.pixels;
      for (int64_t i = 0; i < s.pixels; ++i) out[i] = row[i] * scale + shift;
    }
    mean_out[c] = mean;
    var_out[c] = var;
    moving_mean[c] = moving_mean[c] * (1.f - momentum) + mean * momentum;
    moving_var[c] = moving_var[c] * (1.f - momentum) + var * unbiased * momentum;
  });
  return 0;
}

// params: dy, x, gamma, batch mean, batch variance, config -> dx, dgamma, dbeta.
int batch_norm_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                        void *) {
  if (nparam != 9 || ndims[0] != 4 || !all_float(dtypes, 9)) return 10;
  const Shape s = shape_of(shapes[0]);
  const float *dy = static_cast<const float *>(params[0]), *x = static_cast<const float *>(params[1]),
              *gamma = static_cast<const float *>(params[2]), *mean = static_cast<const float *>(params[3]),
              *var = static_cast<const float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0];
  float *dx = static_cast<float *>(params[6]), *dgamma = static_cast<float *>(params[7]),
        *dbeta = static_cast<float *>(params[8]);
  const double count = static_cast<double>(s.batch * s.pixels);
  each_channel(s.channels, [&](int64_t c) {
    const float m = mean[c], invstd = 1.f / std::sqrt(var[c] + eps);
    double sum_dy = 0.0, sum_dy_xc = 0.0;  // xc: x - mean
    for (int64_t n = 0; n < s.batch; ++n) {
      const int64_t at = (n * s.channels + c) * s.pixels;
      float part_dy = 0.f, part_dy_xc = 0.f;
#pragma omp simd reduction(+ : part_dy, part_dy_xc)
      for (int64_t i = 0; i < s.pixels; ++i) {
        part_dy += dy[at + i];
        part_dy_xc += dy[at + i] * (x[at + i] - m);
      }
      sum_dy += part_dy;
      sum_dy_xc += part_dy_xc;
    }
    dgamma[c] = static_cast<float>(sum_dy_xc) * invstd;
    dbeta[c] = static_cast<float>(sum_dy);
    // dx = gamma * invstd * (dy - mean(dy) - xc * invstd^2 * mean(dy * xc))
    const float scale = gamma[c] * invstd, mean_dy = static_cast<float>(sum_dy / count),
                slope = static_cast<float>(sum_dy_xc / count) * invstd * invstd;
    for (int64_t n = 0; n < s.batch; ++n) {
      const int64_t at = (n * s.channels + c) * s.pixels;
      for (int64_t i = 0; i < s.pixels; ++i)
        dx[at + i] = scale * (dy[at + i] - mean_dy - (x[at + i] - m) * slope);
    }
  });
  return 0;
}

}  // extern "C"
