#pragma once
// LatentCache: the per-layer cache of multi-head latent attention (MLA; DeepSeek-AI 2024,
// "DeepSeek-V2", arXiv:2405.04434, section 2.1), and cache-size accounting for MLA / MHA / GQA / MQA.
//
// MLA caches no per-head keys or values. Each token stores one row of kv_lora_rank + qk_rope_head_dim
// values, shared by all heads:
//   row t = [ c_kv (kv_lora_rank: the kv_a_layernorm-normalized latent) | k_rope (qk_rope_head_dim:
//            the decoupled RoPE key, already rotated at the token's position) ]
// 512 + 64 = 576 values per token per layer at the DeepSeek-V2/V3 shapes, against
// n_heads x (qk_head_dim + v_head_dim) = 16 x (192 + 128) = 5120 for the same layer's expanded K/V
// (V2-Lite) or 128 x 320 = 40960 (V3). The absorbed attention of attention/mla.hpp reads the cache as
// ONE kv head (flash_attention with n_kv_heads = 1) whose key is the whole row and whose value is the
// first kv_lora_rank values of the same row: span() gives a KVSpan with v == k, so there is no
// separate V storage.
//
// Storage is contiguous, [capacity][kv_lora_rank + qk_rope_head_dim], in E = float, f16 or bf16
// (rounded to nearest even when appended: relative error <= 2^-11 (f16) or 2^-8 (bf16) per element;
// the normalized latent has RMS ~|kv_a_layernorm.weight|, far from f16's overflow at 65504).
// There is no eviction: appending past the capacity throws ErrorKind::capacity and changes nothing.
// Positions are absolute: token t of the cache has position t (next_position() == size()).
//
// A cache is owned by the caller (one per layer and per sequence), never by the layer.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/tensor.hpp"
#include "../ops/attention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class E = float>
class LatentCache {
 public:
  struct Config {
    Index kv_lora_rank = 0;      ///< latent width (HF `kv_lora_rank`; 512 in DeepSeek-V2/V3)
    Index qk_rope_head_dim = 0;  ///< decoupled RoPE key width (HF `qk_rope_head_dim`; 64)
    Index capacity = 0;          ///< tokens
  };

  explicit LatentCache(const Config& cfg) : cfg_(cfg) {
    check(cfg_.kv_lora_rank > 0 && cfg_.qk_rope_head_dim >= 0 && cfg_.capacity > 0, ErrorKind::config,
          "LatentCache", "kv_lora_rank = ", cfg_.kv_lora_rank, " and capacity = ", cfg_.capacity,
          " must be >= 1, qk_rope_head_dim = ", cfg_.qk_rope_head_dim, " >= 0");
    data_.assign(static_cast<std::size_t>(cfg_.capacity) * static_cast<std::size_t>(row_dim()), E{});
  }

  const Config& config() const noexcept { return cfg_; }
  Index capacity() const noexcept { return cfg_.capacity; }
  /// Tokens held now.
  Index size() const noexcept { return size_; }
  /// Absolute position the next appended token gets (= tokens appended so far = size()).
  std::int64_t next_position() const noexcept { return static_cast<std::int64_t>(size_); }
  /// Values per cached token: kv_lora_rank + qk_rope_head_dim.
  Index row_dim() const noexcept { return cfg_.kv_lora_rank + cfg_.qk_rope_head_dim; }

  /// Bytes of one token's row (one layer).
  static std::size_t bytes_per_token(Index kv_lora_rank, Index qk_rope_head_dim) {
    return static_cast<std::size_t>(kv_lora_rank + qk_rope_head_dim) * sizeof(E);
  }
  /// Bytes of the whole storage (capacity rows).
  std::size_t bytes() const noexcept { return data_.size() * sizeof(E); }

  /// Forget everything (capacity and storage stay).
  void clear() noexcept { size_ = 0; }

  /// Would appending `tokens` more succeed?
  bool can_append(Index tokens) const noexcept { return tokens >= 0 && size_ + tokens <= cfg_.capacity; }

  /// Append T rows [T, kv_lora_rank + qk_rope_head_dim] = [c_kv | k_rope] (normalized latent, rotated
  /// RoPE key). Throws (and changes nothing) on a shape mismatch or when the cache is full.
  void append(ConstMatrixRef<float> rows /* [T, kv_lora_rank + qk_rope_head_dim] */) {
    check_shape("LatentCache::append", "rows", rows.rows(), rows.cols(), -1, row_dim());
    const Index T = rows.rows();
    check(can_append(T), ErrorKind::capacity, "LatentCache::append", "cache holds ", size_, " of ", cfg_.capacity,
          " tokens; appending ", T, " more would overflow it");
    const Index w = row_dim();
    for (Index t = 0; t < T; ++t) {
      from_float_n(rows.data() + t * rows.outerStride(),
                   data_.data() + static_cast<std::size_t>(size_ + t) * static_cast<std::size_t>(w), w);
    }
    size_ += T;
  }

  /// Row t < size() of the cache: [kv_lora_rank + qk_rope_head_dim] values.
  const E* row(Index t) const {
    check(t >= 0 && t < size_, ErrorKind::invalid_argument, "LatentCache::row", "token ", t, " is not in [0, ",
          size_, ")");
    return data_.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(row_dim());
  }

  /// The cached tokens as the single kv head of absorbed MLA attention: key = the whole row (dim
  /// kv_lora_rank + qk_rope_head_dim), value = its first kv_lora_rank values (v aliases k: same
  /// pointer, same row stride). Positions 0 .. size() - 1.
  KVSpan<E> span() const noexcept {
    KVSpan<E> s;
    s.k = data_.data();
    s.v = data_.data();
    s.k_ld = s.v_ld = row_dim();
    s.k_head_stride = s.v_head_stride = 0;  // one kv head
    s.tokens = size_;
    s.pos0 = 0;
    return s;
  }

 private:
  Config cfg_;
  std::vector<E> data_;  // [capacity][kv_lora_rank + qk_rope_head_dim]
  Index size_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Cache-size accounting
// ------------------------------------------------------------------------------------------------

/// What one attention layer caches per token under one scheme.
struct CacheFootprint {
  std::string scheme;              ///< e.g. "MHA", "GQA-8", "MQA", "MLA"
  std::string layout;              ///< how the values per token add up, e.g. "16 x (128 + 128)"
  Index values_per_token = 0;      ///< cached values per token per layer
  std::size_t element_bytes = 4;   ///< 4 (float), 2 (f16 / bf16)

  /// Bytes per token per layer.
  std::size_t bytes_per_token() const noexcept {
    return static_cast<std::size_t>(values_per_token) * element_bytes;
  }
  /// Bytes for `tokens` tokens over `layers` layers.
  double bytes(Index tokens, Index layers = 1) const noexcept {
    return static_cast<double>(bytes_per_token()) * static_cast<double>(tokens) * static_cast<double>(layers);
  }
};

/// A KVCache of n_kv_heads heads, K of head_dim and V of v_head_dim values per head (MHA: n_kv_heads =
/// n_heads, GQA: a divisor, MQA: 1; MLA with expanded K/V: n_heads, qk_head_dim, v_head_dim).
inline CacheFootprint kv_cache_footprint(std::string scheme, Index n_kv_heads, Index head_dim, Index v_head_dim,
                                         std::size_t element_bytes) {
  check(n_kv_heads > 0 && head_dim > 0 && v_head_dim > 0 && element_bytes > 0, ErrorKind::config,
        "kv_cache_footprint", "n_kv_heads = ", n_kv_heads, ", head_dim = ", head_dim, ", v_head_dim = ", v_head_dim,
        " and element_bytes = ", element_bytes, " must be >= 1");
  CacheFootprint f;
  f.scheme = std::move(scheme);
  f.layout = std::to_string(n_kv_heads) + " x (" + std::to_string(head_dim) + " + " + std::to_string(v_head_dim) + ")";
  f.values_per_token = n_kv_heads * (head_dim + v_head_dim);
  f.element_bytes = element_bytes;
  return f;
}

/// MLA's LatentCache: kv_lora_rank + qk_rope_head_dim values per token, whatever the head count.
inline CacheFootprint latent_cache_footprint(Index kv_lora_rank, Index qk_rope_head_dim, std::size_t element_bytes,
                                             std::string scheme = "MLA") {
  check(kv_lora_rank > 0 && qk_rope_head_dim >= 0 && element_bytes > 0, ErrorKind::config, "latent_cache_footprint",
        "kv_lora_rank = ", kv_lora_rank, ", qk_rope_head_dim = ", qk_rope_head_dim, " and element_bytes = ",
        element_bytes, " out of range");
  CacheFootprint f;
  f.scheme = std::move(scheme);
  f.layout = std::to_string(kv_lora_rank) + " + " + std::to_string(qk_rope_head_dim);
  f.values_per_token = kv_lora_rank + qk_rope_head_dim;
  f.element_bytes = element_bytes;
  return f;
}

/// A printable table: one line per scheme with the values and bytes per token per layer, the bytes
/// for `context` tokens in one layer and in `layers` layers, and the ratio of bytes to the first row.
inline std::string format_footprints(const std::vector<CacheFootprint>& rows, Index context, Index layers = 1) {
  std::string out;
  char line[320];
  const std::string ctx = std::to_string(context) + " tok, 1 layer";
  const std::string all = std::to_string(context) + " tok, " + std::to_string(layers) + (layers == 1 ? " layer" : " layers");
  const std::string vs = rows.empty() ? std::string("ratio") : "vs " + rows.front().scheme;
  std::snprintf(line, sizeof line, "%-14s %-20s %7s %7s %9s %18s %20s %10s\n", "scheme", "values per token", "values",
                "B/value", "B/token", ctx.c_str(), all.c_str(), vs.c_str());
  out += line;
  auto human = [](double b) {
    char s[32];
    if (b >= double(1ull << 30))
      std::snprintf(s, sizeof s, "%.2f GiB", b / double(1ull << 30));
    else if (b >= double(1ull << 20))
      std::snprintf(s, sizeof s, "%.2f MiB", b / double(1ull << 20));
    else
      std::snprintf(s, sizeof s, "%.2f KiB", b / 1024.0);
    return std::string(s);
  };
  const double first = rows.empty() ? 1.0 : static_cast<double>(rows.front().bytes_per_token());
  for (const CacheFootprint& f : rows) {
    std::snprintf(line, sizeof line, "%-14s %-20s %7ld %7zu %9zu %18s %20s %9.3fx\n", f.scheme.c_str(),
                  f.layout.c_str(), static_cast<long>(f.values_per_token), f.element_bytes, f.bytes_per_token(),
                  human(f.bytes(context)).c_str(), human(f.bytes(context, layers)).c_str(),
                  first > 0 ? static_cast<double>(f.bytes_per_token()) / first : 0.0);
    out += line;
  }
  return out;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
