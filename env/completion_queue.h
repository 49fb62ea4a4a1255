// Copyright e2d authors.
//
// CompletionQueue: the "node's thread" for code that uses PosixFileSystem outside the node
// runtime (tests, benchmarks). Its poster() hands completions over from the I/O thread; RunUntil
// runs them on the calling thread, waiting (no sleeps) until a condition holds.

#ifndef E2D_ENV_COMPLETION_QUEUE_H_
#define E2D_ENV_COMPLETION_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

namespace e2d::env {

class CompletionQueue {
 public:
  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> f) {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(f));
      cv_.notify_all();
    };
  }

  // Runs completions, in the order they were posted, until `done()` holds.
  void RunUntil(const std::function<bool()>& done) {
    while (!done()) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
    }
  }

  // Runs exactly `n` completions (waiting for them).
  void Run(size_t n) {
    size_t ran = 0;
    RunUntil([&] { return ran++ == n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

}  // namespace e2d::env

#endif  // E2D_ENV_COMPLETION_QUEUE_H_
