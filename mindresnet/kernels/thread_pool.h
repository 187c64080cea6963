// The thread pool shared by mindresnet's CPU kernels (oneDNN's threadpool runtime and batch norm),
// and the lock that lets one kernel at a time use it. MindSpore gives AOT kernels no thread pool.
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "dnnl_api.h"

namespace mindresnet {

inline thread_local bool in_pool = false;

// A fixed set of threads that runs oneDNN's parallel_for calls; the calling thread takes part.
class ThreadPool : public dnnl::threadpool_interop::threadpool_iface {
 public:
  explicit ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() override {
    { std::lock_guard<std::mutex> lock(mutex_); stop_ = true; }
    wake_.notify_all();
    for (auto &t : workers_) t.join();
  }
  int get_num_threads() const override { return threads_; }
  bool get_in_parallel() const override { return in_pool; }
  uint64_t get_flags() const override { return 0; }  // synchronous: parallel_for returns when done
  void wait() override {}
  void parallel_for(int n, const std::function<void(int, int)> &fn) override {
    if (n <= 0) return;
    if (n == 1 || threads_ == 1 || in_pool) {
      for (int i = 0; i < n; ++i) fn(i, n);
      return;
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      idle_.wait(lock, [this] { return active_ == 0; });
      job_ = &fn;
      jobs_ = n;
      next_.store(0);
      left_.store(n);
      ++generation_;
    }
    wake_.notify_all();
    run_jobs();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return left_.load() == 0; });
  }

 private:
  void run_jobs() {
    bool was_in_pool = in_pool;
    in_pool = true;
    for (int i = next_.fetch_add(1); i < jobs_; i = next_.fetch_add(1)) {
      (*job_)(i, jobs_);
      if (left_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
    in_pool = was_in_pool;
  }
  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++active_;
      lock.unlock();
      run_jobs();
      lock.lock();
      if (--active_ == 0) idle_.notify_all();
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_, idle_;
  const std::function<void(int, int)> *job_ = nullptr;
  int jobs_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::atomic<int> next_{0}, left_{0};
};

// One kernel at a time: the pool and the kernels' scratch buffers are shared.
inline std::mutex &kernel_mutex() {
  static std::mutex mutex;
  return mutex;
}

inline int &kernel_threads() {  // set before the pool's first use; 0: the machine's
  static int threads = 0;
  return threads;
}

// The pool, created at first use with kernel_threads() threads. Call with kernel_mutex() held.
inline ThreadPool &shared_pool() {
  static ThreadPool *pool = nullptr;
  if (!pool) {
    if (kernel_threads() <= 0) {
      unsigned hw = std::thread::hardware_concurrency();
      kernel_threads() = hw ? static_cast<int>(hw) : 1;
    }
    pool = new ThreadPool(kernel_threads());  // lives as long as the process
  }
  return *pool;
}

}  // namespace mindresnet
