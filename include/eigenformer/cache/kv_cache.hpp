#pragma once
// KVCache: the contiguous per-layer key/value cache for incremental decoding.
//
// Storage is head-major, K [n_kv_heads][capacity][head_dim] and V [n_kv_heads][capacity][v_head_dim],
// so that decoding streams each kv head's keys and values contiguously. The element type E is float,
// f16 or bf16 (half the bytes, so about half the decode bandwidth; values are rounded to nearest even
// when appended: a relative error of at most 2^-11 (f16) or 2^-8 (bf16) per element; finite values
// beyond the range saturate to the largest finite value, +-65504 for f16, instead of becoming inf:
// from_float in core/half.hpp, docs/numerics.md, tests/test_edge_cases.cpp EdgeCache.*).
//
// A cache is owned by the caller (one per layer and per sequence), never by the layer, so a layer can
// serve many sequences and threads at once.
//
// Eviction when the capacity is reached:
//   none            appending past the capacity throws ErrorKind::capacity and changes nothing;
//   sliding_window  keeps the newest `capacity` tokens (a ring buffer): for sliding-window attention,
//                   capacity >= the window;
//   streaming       StreamingLLM (Xiao et al. 2023, arXiv:2309.17453): keeps the first `sink_tokens`
//                   tokens forever and the newest capacity - sink_tokens in a ring.
// Positions are absolute (the count of tokens appended before; the first token is position 0) and
// stay attached to the tokens: the attention mask and the keys' RoPE use original positions.
// StreamingLLM's paper instead re-numbers positions inside the cache; that is not done here.
//
// The layer computes attention for new tokens over spans() plus the new tokens' own K/V, and only
// then appends them, so eviction never removes a key that a token of the same batch needed.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/tensor.hpp"
#include "../ops/attention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

enum class CacheEviction { none, sliding_window, streaming };

template <class E = float>
class KVCache {
 public:
  struct Config {
    Index n_kv_heads = 0;
    Index head_dim = 0;
    Index v_head_dim = 0;  ///< 0: head_dim
    Index capacity = 0;    ///< tokens
    CacheEviction eviction = CacheEviction::none;
    Index sink_tokens = 0;  ///< streaming only: tokens kept forever at the start
  };

  explicit KVCache(const Config& cfg) : cfg_(cfg) {
    if (cfg_.v_head_dim == 0) cfg_.v_head_dim = cfg_.head_dim;
    check(cfg_.n_kv_heads > 0 && cfg_.head_dim > 0 && cfg_.v_head_dim > 0 && cfg_.capacity > 0, ErrorKind::config,
          "KVCache", "n_kv_heads = ", cfg_.n_kv_heads, ", head_dim = ", cfg_.head_dim, ", v_head_dim = ",
          cfg_.v_head_dim, " and capacity = ", cfg_.capacity, " must be >= 1");
    check(cfg_.eviction == CacheEviction::streaming || cfg_.sink_tokens == 0, ErrorKind::config, "KVCache",
          "sink_tokens = ", cfg_.sink_tokens, " needs eviction = streaming");
    check(cfg_.sink_tokens >= 0 && cfg_.sink_tokens < cfg_.capacity, ErrorKind::config, "KVCache",
          "sink_tokens = ", cfg_.sink_tokens, " must be in [0, capacity = ", cfg_.capacity, ")");
    k_.assign(static_cast<std::size_t>(cfg_.n_kv_heads * cfg_.capacity * cfg_.head_dim), E{});
    v_.assign(static_cast<std::size_t>(cfg_.n_kv_heads * cfg_.capacity * cfg_.v_head_dim), E{});
  }

  const Config& config() const noexcept { return cfg_; }
  Index capacity() const noexcept { return cfg_.capacity; }
  /// Tokens held now.
  Index size() const noexcept { return size_; }
  /// Absolute position the next appended token gets (= tokens appended so far).
  std::int64_t next_position() const noexcept { return appended_; }
  /// Bytes of K and V storage for one token (all kv heads).
  static std::size_t bytes_per_token(Index n_kv_heads, Index head_dim, Index v_head_dim) {
    return static_cast<std::size_t>(n_kv_heads * (head_dim + v_head_dim)) * sizeof(E);
  }
  std::size_t bytes() const noexcept { return (k_.size() + v_.size()) * sizeof(E); }

  /// Forget everything (capacity and storage stay).
  void clear() noexcept {
    size_ = 0;
    appended_ = 0;
    ring_head_ = 0;
  }

  /// Would appending `tokens` more succeed?
  bool can_append(Index tokens) const noexcept {
    return cfg_.eviction != CacheEviction::none || size_ + tokens <= cfg_.capacity;
  }

  /// Append T tokens: k [T, n_kv_heads * head_dim], v [T, n_kv_heads * v_head_dim] (the layout of the
  /// k/v projections). Throws (and changes nothing) on a shape mismatch, or when full without eviction.
  void append(ConstMatrixRef<float> k, ConstMatrixRef<float> v) {
    const Index hk = cfg_.n_kv_heads * cfg_.head_dim, hv = cfg_.n_kv_heads * cfg_.v_head_dim;
    check_shape("KVCache::append", "k", k.rows(), k.cols(), -1, hk);
    check_shape("KVCache::append", "v", v.rows(), v.cols(), k.rows(), hv);
    const Index T = k.rows();
    check(can_append(T), ErrorKind::capacity, "KVCache::append", "cache holds ", size_, " of ", cfg_.capacity,
          " tokens; appending ", T, " more would overflow it (eviction = none)");
    for (Index t = 0; t < T; ++t) {
      const Index slot = claim_slot();
      for (Index h = 0; h < cfg_.n_kv_heads; ++h) {
        E* kd = &k_[static_cast<std::size_t>((h * cfg_.capacity + slot) * cfg_.head_dim)];
        E* vd = &v_[static_cast<std::size_t>((h * cfg_.capacity + slot) * cfg_.v_head_dim)];
        const float* ks = k.data() + t * k.outerStride() + h * cfg_.head_dim;
        const float* vs = v.data() + t * v.outerStride() + h * cfg_.v_head_dim;
        from_float_n(ks, kd, cfg_.head_dim);
        from_float_n(vs, vd, cfg_.v_head_dim);
      }
      ++appended_;
    }
  }

  /// The cached tokens as at most three runs of consecutive positions, oldest first: the sink
  /// tokens, then the ring in position order (which may wrap). Returns how many spans were written.
  std::size_t spans(std::array<KVSpan<E>, 3>& out) const {
    std::size_t n = 0;
    auto add = [&](Index slot, Index tokens, std::int64_t pos0) {
      if (tokens <= 0) return;
      KVSpan<E> s;
      s.k = k_.data() + slot * cfg_.head_dim;
      s.v = v_.data() + slot * cfg_.v_head_dim;
      s.k_ld = cfg_.head_dim;
      s.v_ld = cfg_.v_head_dim;
      s.k_head_stride = cfg_.capacity * cfg_.head_dim;
      s.v_head_stride = cfg_.capacity * cfg_.v_head_dim;
      s.tokens = tokens;
      s.pos0 = pos0;
      out[n++] = s;
    };
    const Index sinks = std::min<Index>(cfg_.sink_tokens, size_);
    add(0, sinks, 0);
    const Index ring_tokens = size_ - sinks;
    if (ring_tokens <= 0) return n;
    const Index ring_cap = cfg_.capacity - cfg_.sink_tokens;
    const std::int64_t first_pos = appended_ - ring_tokens;  // oldest token in the ring
    if (ring_tokens < ring_cap) {  // not wrapped yet: slots sinks .. sinks + ring_tokens in order
      add(cfg_.sink_tokens, ring_tokens, first_pos);
    } else {  // full ring: oldest at ring_head_
      const Index tail = ring_cap - ring_head_;
      add(cfg_.sink_tokens + ring_head_, tail, first_pos);
      add(cfg_.sink_tokens, ring_head_, first_pos + tail);
    }
    return n;
  }

 private:
  // The storage slot of the next token, evicting the oldest ring token when full.
  Index claim_slot() {
    if (size_ < cfg_.sink_tokens) return size_++;  // streaming: fill the sinks first
    const Index ring_cap = cfg_.capacity - cfg_.sink_tokens;
    if (size_ < cfg_.capacity) {
      const Index slot = size_++;
      if (size_ == cfg_.capacity) ring_head_ = 0;  // ring now full, oldest at its start
      return slot;
    }
    // Full: overwrite the oldest ring slot (eviction), which becomes the newest.
    const Index slot = cfg_.sink_tokens + ring_head_;
    ring_head_ = (ring_head_ + 1) % ring_cap;
    return slot;
  }

  Config cfg_;
  std::vector<E> k_;  // [n_kv_heads][capacity][head_dim]
  std::vector<E> v_;  // [n_kv_heads][capacity][v_head_dim]
  Index size_ = 0;
  std::int64_t appended_ = 0;
  Index ring_head_ = 0;  // oldest ring slot once the ring is full (relative to sink_tokens)
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
