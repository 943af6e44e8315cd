#pragma once
// Workspace: a caller-owned scratch arena for the intermediates of a forward pass, so that the
// forward path allocates nothing once the workspace has grown to the largest size used (llama2.c's
// RunState idea, without fixing the sizes up front).
//
//   eigenformer::Workspace<float> ws;
//   mlp.forward(x, y, ws);   // first call may allocate; later calls of the same or smaller size don't
//
// Allocation is a bump pointer inside 64-byte-aligned blocks. A Frame rewinds the arena when it
// goes out of scope, so layers nest: each layer opens a Frame, takes its buffers, and releases them
// on return. When a request does not fit in the blocks left, a new block of at least the current
// capacity is appended (earlier views stay valid, capacity at least doubles), so a forward pass
// that repeats the same requests allocates nothing after its first call.
// Not thread-safe: use one Workspace per thread.

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "error.hpp"
#include "tensor.hpp"

namespace eigenformer {

template <class T>
class Workspace {
 public:
  static constexpr std::size_t kAlign = 64;  // bytes

  Workspace() = default;
  explicit Workspace(std::size_t elements) { reserve(elements); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) noexcept = default;
  Workspace& operator=(Workspace&&) noexcept = default;
  ~Workspace() = default;

  /// Make sure `elements` (in total, across live buffers) fit without further allocation.
  void reserve(std::size_t elements) {
    check(used_ == 0, ErrorKind::invalid_argument, "Workspace", "reserve while buffers are in use");
    if (capacity() >= elements) return;
    blocks_.clear();
    add_block(elements);
  }

  /// Elements that fit without allocating (when nothing is in use).
  std::size_t capacity() const noexcept {
    std::size_t c = 0;
    for (const auto& b : blocks_) c += b.size;
    return c;
  }
  /// The most elements ever in use at once.
  std::size_t high_water() const noexcept { return high_water_; }
  /// How many times the arena allocated memory.
  std::size_t allocations() const noexcept { return allocations_; }

  /// A [rows, cols] row-major buffer, valid until the enclosing Frame ends. Contents are undefined.
  MatrixMap<T> matrix(Index rows, Index cols) {
    check(rows >= 0 && cols >= 0, ErrorKind::invalid_argument, "Workspace", "negative size [", rows, ", ", cols, "]");
    T* p = take(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols));
    return MatrixMap<T>(p, rows, cols, Eigen::OuterStride<>(cols));
  }

  /// Scratch for `count` values of another trivially copyable type U (token positions, 16-bit cache
  /// rows, ...), carved from the same arena; valid until the enclosing Frame ends.
  template <class U>
  U* raw(std::size_t count) {
    static_assert(std::is_trivially_copyable<U>::value && alignof(U) <= kAlign, "plain types only");
    void* p = take((count * sizeof(U) + sizeof(T) - 1) / sizeof(T));
    return static_cast<U*>(p);
  }

  /// Rewinds the workspace to where it was when the frame was opened.
  class Frame {
   public:
    explicit Frame(Workspace& ws) : ws_(ws), block_(ws.current_), offset_(ws.offset_), used_(ws.used_) {}
    ~Frame() {
      ws_.current_ = block_;
      ws_.offset_ = offset_;
      ws_.used_ = used_;
    }
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;

   private:
    Workspace& ws_;
    std::size_t block_, offset_, used_;
  };

 private:
  struct Deleter {
    void operator()(T* p) const noexcept { ::operator delete[](p, std::align_val_t(kAlign)); }
  };
  struct Block {
    std::unique_ptr<T[], Deleter> data;
    std::size_t size = 0;
  };

  static std::size_t round_up(std::size_t n) {
    constexpr std::size_t per = kAlign / sizeof(T) > 0 ? kAlign / sizeof(T) : 1;
    return (n + per - 1) / per * per;
  }

  void add_block(std::size_t elements) {
    Block b;
    b.size = round_up(elements);
    b.data.reset(static_cast<T*>(::operator new[](b.size * sizeof(T), std::align_val_t(kAlign))));
    blocks_.push_back(std::move(b));
    ++allocations_;
  }

  T* take(std::size_t n) {
    n = round_up(n);
    while (current_ < blocks_.size() && offset_ + n > blocks_[current_].size) {
      ++current_;
      offset_ = 0;
    }
    if (current_ == blocks_.size()) add_block(n > capacity() ? n : capacity());
    T* p = blocks_[current_].data.get() + offset_;
    offset_ += n;
    used_ += n;
    if (used_ > high_water_) high_water_ = used_;
    return p;
  }

  std::vector<Block> blocks_;
  std::size_t current_ = 0, offset_ = 0, used_ = 0;
  std::size_t high_water_ = 0, allocations_ = 0;
};

}  // namespace eigenformer
