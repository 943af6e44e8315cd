#pragma once
// xPos, the extrapolatable rotary embedding (Sun et al. 2023, "A Length-Extrapolatable
// Transformer", arXiv:2212.10554), exactly as torchscale implements it (torchscale 0.3.0,
// torchscale/component/xpos_relative_position.py, class XPOS):
//
//   scale[j]  = (2j + 0.4 d) / (1.4 d),                     j < d/2, d = head_dim
//   forward(x [.., length, d], offset, downscale):
//     N = length + offset; min_pos = -N // 2 (Python floor division, = -ceil(N/2))
//     row i (i < length) sits at rotation position t = offset + i and scale position t + min_pos
//     zeta[j] = scale[j] ^ ((t + min_pos) / scale_base)     (1 / zeta for downscale, i.e. keys)
//     theta[j] = t / 10000^(j / (d/2))                        (fixed_pos_embedding: positions 0..N-1,
//                                                              the last `length` rows are kept)
//     (x[2j], x[2j+1]) rotated by theta[j] and multiplied by zeta[j]  (rotate_every_two and
//                                                              duplicate_interleave: interleaved pairs)
//
// torchscale's MultiheadAttention calls it on the keys with offset 0 (downscale) and on the
// queries with offset = src_len - 1 during incremental decoding (offset 0 otherwise), where the
// keys are all src_len cached (un-rotated) keys: both then use the same centre ceil(src_len / 2),
// so q.k carries zeta^((t_q - t_k) / scale_base), a function of the relative position only.
// The centre only keeps the exponents small (zeta^(t / 512) under/overflows float near
// |t| ~ 35000 without it). The per-position form apply_at() takes the centre explicitly: with a
// cache of already-rotated keys, keep one fixed centre for a whole sequence.
//
// Numerics: as RoPE (position/rope.hpp), float follows torchscale's float32 op sequence with pow,
// cos and sin correctly rounded from double; T = double computes in double.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../kernels/rope.hpp"
#include "../ops/rows.hpp"
#include "rope.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

class XPos {
 public:
  /// head_dim: even, >= 2; scale_base: torchscale `xpos_scale_base` (default 512), > 0.
  explicit XPos(Index head_dim, double scale_base = 512) : head_dim_(head_dim), scale_base_(scale_base) {
    check(head_dim >= 2 && head_dim % 2 == 0, ErrorKind::config, kWhere, "head_dim = ", head_dim,
          " must be even and >= 2");
    check(scale_base > 0 && std::isfinite(scale_base), ErrorKind::config, kWhere, "scale_base = ", scale_base,
          " must be > 0 and finite");
    const Index half = head_dim / 2;
    scale_.resize(static_cast<std::size_t>(half));
    scale_d_.resize(scale_.size());
    inv_freq_.resize(scale_.size());
    inv_freq_d_.resize(scale_.size());
    init<float>(scale_.data(), inv_freq_.data());
    init<double>(scale_d_.data(), inv_freq_d_.data());
  }

  Index head_dim() const noexcept { return head_dim_; }
  double scale_base() const noexcept { return scale_base_; }
  /// torchscale's `scale` buffer, float32 [head_dim / 2].
  const std::vector<float>& scale() const noexcept { return scale_; }
  /// The rotation frequencies of fixed_pos_embedding, float32 [head_dim / 2].
  const std::vector<float>& inv_freq() const noexcept { return inv_freq_; }

  /// The centre torchscale uses for a call covering total_len = length + offset positions:
  /// -min_pos = ceil(total_len / 2).
  static std::int64_t torchscale_centre(Index total_len) noexcept { return (total_len + 1) / 2; }

  /// torchscale XPOS.forward on every head of x: row i is at position offset + i; downscale = true
  /// for keys (1 / zeta), false for queries.
  template <class T>
  void apply(MatrixRef<T> x /* [length, n_heads * head_dim] */, Index n_heads, Index offset,
             bool downscale) const {
    check(offset >= 0, ErrorKind::invalid_argument, kWhere, "offset = ", offset, " must be >= 0");
    check_x(x.rows(), x.cols(), n_heads);
    const std::int64_t centre = torchscale_centre(x.rows() + offset);
    run<T>(
        x, n_heads, [offset](Index i) { return static_cast<std::int64_t>(offset + i); }, centre, downscale);
  }

  /// Per-position form (decode, or keys rotated once into a cache): row i is at position
  /// positions[i] >= 0 with scale exponent (positions[i] - centre) / scale_base.
  template <class T>
  void apply_at(MatrixRef<T> x /* [T, n_heads * head_dim] */, Index n_heads,
                const std::int64_t* positions /* [T] */, std::int64_t centre, bool downscale) const {
    check_x(x.rows(), x.cols(), n_heads);
    if (x.rows() == 0) return;
    check(positions != nullptr, ErrorKind::invalid_argument, kWhere, "positions is null for ", x.rows(),
          " rows");
    for (Index i = 0; i < x.rows(); ++i)
      check(positions[i] >= 0, ErrorKind::invalid_argument, kWhere, "positions[", i, "] = ", positions[i],
            " must be >= 0");
    run<T>(
        x, n_heads, [positions](Index i) { return positions[i]; }, centre, downscale);
  }

  /// The scaled cos/sin [head_dim / 2] of one position: cos(theta) * zeta and sin(theta) * zeta
  /// (zeta inverted for downscale); rotate interleaved pairs with them to apply xPos.
  template <class T>
  void cos_sin(std::int64_t position, std::int64_t centre, bool downscale, T* cos, T* sin) const {
    check(position >= 0, ErrorKind::invalid_argument, kWhere, "position = ", position, " must be >= 0");
    check(cos != nullptr && sin != nullptr, ErrorKind::invalid_argument, kWhere,
          "null cos/sin output pointer");
    angles<T>(position, centre, downscale, cos, sin);
  }

 private:
  static constexpr const char* kWhere = "xPos";

  void check_x(Index rows, Index cols, Index n_heads) const {
    check(n_heads >= 1, ErrorKind::invalid_argument, kWhere, "n_heads = ", n_heads, " must be >= 1");
    check_shape(kWhere, "x", rows, cols, -1, n_heads * head_dim_);
  }

  template <class R>
  void init(R* scale, R* inv_freq) const {
    using detail::rope::fl;
    const Index half = head_dim_ / 2;
    const R shift = static_cast<R>(0.4 * static_cast<double>(head_dim_));  // torch: int64 arange + float
    const R denom = static_cast<R>(1.4 * static_cast<double>(head_dim_));
    for (Index j = 0; j < half; ++j) {
      scale[j] = fl<R>(fl<R>(static_cast<R>(2 * j) + shift) / denom);
      // fixed_pos_embedding: 1 / 10000 ** (arange(0, dim) / dim), dim = head_dim / 2.
      const R e = fl<R>(static_cast<R>(j) / static_cast<R>(half));
      inv_freq[j] = fl<R>(R(1) / fl<R>(static_cast<R>(std::pow(10000.0, static_cast<double>(e)))));
    }
  }

  template <class T>
  void angles(std::int64_t t, std::int64_t centre, bool downscale, T* c, T* s) const {
    using detail::rope::fl;
    const std::vector<T>& scale = pick<T>(scale_, scale_d_);
    const std::vector<T>& inv = pick<T>(inv_freq_, inv_freq_d_);
    const T pos = static_cast<T>(t);
    const T e = fl<T>(static_cast<T>(t - centre) / static_cast<T>(scale_base_));
    for (std::size_t j = 0; j < scale.size(); ++j) {
      T zeta = fl<T>(static_cast<T>(std::pow(static_cast<double>(scale[j]), static_cast<double>(e))));
      if (downscale) zeta = fl<T>(T(1) / zeta);
      const T a = pos * inv[j];
      const T cj = static_cast<T>(std::cos(static_cast<double>(a)));
      const T sj = static_cast<T>(std::sin(static_cast<double>(a)));
      c[j] = cj * zeta;
      s[j] = sj * zeta;
    }
  }

  template <class T, class PosOf>
  void run(MatrixRef<T> x, Index n_heads, PosOf pos_of, std::int64_t centre, bool downscale) const {
    const auto half = static_cast<std::size_t>(head_dim_ / 2);
    const auto hd = static_cast<std::size_t>(head_dim_);
    ops::detail::for_each_row(x.rows(), x.cols(), [&](Index i) {
      detail::rope::Scratch<T, 512> cs(2 * half);
      T* c = cs.data();
      T* s = c + half;
      angles<T>(pos_of(i), centre, downscale, c, s);
      T* r = ops::detail::row(x, i);
      for (Index h = 0; h < n_heads; ++h)
        kernels::rope_interleaved(r + static_cast<std::size_t>(h) * hd, c, s, half);
    });
  }

  template <class T>
  static const std::vector<T>& pick(const std::vector<float>& f, const std::vector<double>& d) noexcept {
    if constexpr (std::is_same_v<T, float>)
      return f;
    else
      return d;
  }

  Index head_dim_;
  double scale_base_;
  std::vector<float> scale_, inv_freq_;       // [head_dim / 2]
  std::vector<double> scale_d_, inv_freq_d_;  // [head_dim / 2], double
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
