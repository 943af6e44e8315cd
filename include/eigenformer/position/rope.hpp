#pragma once
// Rotary position embedding (RoPE; Su et al. 2021, "RoFormer", arXiv:2104.09864) with the
// frequency scalings of Hugging Face transformers 4.57 (src/transformers/modeling_rope_utils.py):
//   none ("default")  inv_freq[k] = theta^(-2k/d), d = rotary_dim, k < d/2
//   linear            inv_freq / factor (Position Interpolation; kaiokendev, Chen et al. arXiv:2306.15595)
//   dynamic           dynamic NTK (bloc97/emozilla): for seq_len > max_position_embeddings,
//                     theta' = theta * (factor * seq_len / max_pos - (factor - 1))^(d / (d - 2))
//   yarn              YaRN (Peng et al. arXiv:2309.00071): per-frequency blend of the interpolated
//                     (inv_freq / factor) and extrapolated frequencies by a linear ramp between the
//                     correction dims of beta_fast and beta_slow rotations; cos and sin multiplied by the
//                     attention factor (0.1 ln(factor) + 1, or the DeepSeek mscale / mscale_all_dim ratio)
//   llama3            Llama 3.1 (meta-llama/llama-models, apply_scaling): wavelengths above
//                     original_max / low_freq_factor divided by factor, below original_max /
//                     high_freq_factor kept, smooth interpolation in between
// Frequency schedules (RopeFrequencies): `standard` is HF's theta^(-2k/d) above; `linspace` is
// theta^(-linspace(0, 1, d/2)[k]) of torchscale's RetNetRelPos and unilm YOCO's build_rel_pos (the
// last pair turns at 1/theta, not theta^(-(d-2)/d)); linspace takes no scaling.
// And the two pairings of the head dims (RopeLayout): `half` = rotate_half (GPT-NeoX, Llama,
// models/llama/modeling_llama.py) and `interleaved` = rotate_every_two (GPT-J, models/gptj/
// modeling_gptj.py; RoFormer; DeepSeek-V2's original checkpoints).
//
// Numerics (float): the frequencies are computed with the float32 operation sequence of the HF
// functions above (each torch op rounded to float32 in the same order), with pow computed in double
// and rounded -- PyTorch's own float32 pow (SLEEF, <= 1 ulp) can differ from that by 1 ulp in ~1% of
// the entries, which is the only source of disagreement with HF's inv_freq buffer. The angle is
// float(position) * inv_freq rounded to float32 (HF's float32 matmul with inner size 1); cos/sin
// of that float angle are computed in double and rounded (torch's float32 cos/sin are within 1 ulp
// of these), then multiplied by float(attention_scaling) in float32 as HF does (`emb.cos() *
// self.attention_scaling`). For T = double everything is computed in double (the test reference).
//
// Dynamic NTK, statelessly: HF's `dynamic_rope_update` recomputes inv_freq when the forward call's
// max position id + 1 exceeds the longest length it has cached, and resets to the original
// frequencies when a call is shorter than max_position_embeddings again. Here each call derives
// its frequencies from its own seq_len (max position + 1, or the explicit argument). Both agree
// for sequences that only grow (prefill then decode). HF's growth path computes the new base in
// float32 (seq_len is a tensor there) and its init path in double; inv_freq_for reproduces both.
// Note: HF 4.57 uses config.max_position_embeddings for dynamic NTK and ignores
// rope_scaling["original_max_position_embeddings"] (a TODO in its source); so does this class.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../kernels/rope.hpp"
#include "../ops/rows.hpp"

namespace eigenformer {

/// How the rotated dims of a head are paired.
enum class RopeLayout {
  half,         ///< (x[i], x[i + rotary_dim/2]): rotate_half (GPT-NeoX, Llama, Mistral, Qwen, ...)
  interleaved,  ///< (x[2i], x[2i + 1]): rotate_every_two (GPT-J, RoFormer, DeepSeek-V2 originals)
};

/// The frequency schedule before any scaling.
enum class RopeFrequencies {
  standard,  ///< theta^(-2k/d), k < d/2 (RoFormer, HF)
  linspace,  ///< theta^(-linspace(0, 1, d/2)[k]) (torchscale RetNetRelPos, unilm YOCO)
};

/// The frequency scaling (HF `rope_scaling["rope_type"]`, formerly `"type"`).
enum class RopeType {
  none,     ///< "default": plain RoPE
  linear,   ///< "linear"
  dynamic,  ///< "dynamic" (dynamic NTK)
  yarn,     ///< "yarn"
  llama3,   ///< "llama3"
};

inline const char* to_string(RopeLayout l) noexcept { return l == RopeLayout::half ? "half" : "interleaved"; }

/// The Hugging Face name of a rope type.
inline const char* to_string(RopeType t) noexcept {
  switch (t) {
    case RopeType::none:
      return "default";
    case RopeType::linear:
      return "linear";
    case RopeType::dynamic:
      return "dynamic";
    case RopeType::yarn:
      return "yarn";
    case RopeType::llama3:
      return "llama3";
  }
  return "?";
}

/// Parse a Hugging Face rope type name; unknown names (including "longrope", not supported) throw
/// ErrorKind::config.
inline RopeType parse_rope_type(std::string_view name, std::string_view where = "RoPE") {
  if (name == "default") return RopeType::none;
  if (name == "linear") return RopeType::linear;
  if (name == "dynamic") return RopeType::dynamic;
  if (name == "yarn") return RopeType::yarn;
  if (name == "llama3") return RopeType::llama3;
  fail(ErrorKind::config, where, "unknown rope_type '", name,
       "' (known: default, linear, dynamic, yarn, llama3",
       name == "longrope" ? "; longrope is not supported)" : ")");
}

/// HF `rope_scaling` parameters (names and defaults as in transformers 4.57). Only the fields of
/// the chosen type are read.
struct RopeScaling {
  RopeType type = RopeType::none;
  double factor = 1.0;  ///< linear, dynamic, yarn, llama3 (required by HF for all four)
  /// yarn (falls back to RopeConfig::max_position_embeddings when 0) and llama3 (required);
  /// 0 = unset. Not used by dynamic (HF 4.57 uses max_position_embeddings there).
  Index original_max_position_embeddings = 0;
  double beta_fast = 32.0;                 ///< yarn
  double beta_slow = 1.0;                  ///< yarn
  double mscale = 0.0;                     ///< yarn; 0 = unset (HF None)
  double mscale_all_dim = 0.0;             ///< yarn; 0 = unset (HF None)
  std::optional<double> attention_factor;  ///< yarn; unset = derived from factor (and mscale*)
  bool truncate = true;                    ///< yarn: floor/ceil the correction range
  double low_freq_factor = 1.0;            ///< llama3 (Llama 3.1 value; HF requires the key)
  double high_freq_factor = 4.0;           ///< llama3 (Llama 3.1 value; HF requires the key)

  /// Same as parse_rope_type.
  static RopeType parse(std::string_view name, std::string_view where = "RoPE") {
    return parse_rope_type(name, where);
  }
};

/// Rotary embedding configuration (HF config fields in the comments).
struct RopeConfig {
  Index head_dim = 0;      ///< `head_dim` (or hidden_size / num_attention_heads)
  Index rotary_dim = 0;    ///< dims rotated per head (0 = head_dim); HF int(head_dim * partial_rotary_factor)
  double theta = 10000.0;  ///< `rope_theta` (GPT-NeoX `rotary_emb_base`)
  RopeLayout layout = RopeLayout::half;
  RopeFrequencies frequencies = RopeFrequencies::standard;
  RopeScaling scaling;                ///< `rope_scaling`
  Index max_position_embeddings = 0;  ///< `max_position_embeddings` (dynamic: required)

  /// The rotation of torchscale's RetNetRelPos and unilm YOCO: interleaved pairs, linspace frequencies.
  static RopeConfig linspace_interleaved(Index head_dim, double theta) {
    RopeConfig c;
    c.head_dim = head_dim;
    c.theta = theta;
    c.layout = RopeLayout::interleaved;
    c.frequencies = RopeFrequencies::linspace;
    return c;
  }

  /// HF's `int(head_dim * partial_rotary_factor)` (GPT-NeoX `rotary_pct`, Phi `partial_rotary_factor`).
  static Index partial_rotary_dim(Index head_dim, double partial_rotary_factor) {
    return static_cast<Index>(static_cast<double>(head_dim) * partial_rotary_factor);
  }
  Index resolved_rotary_dim() const noexcept { return rotary_dim == 0 ? head_dim : rotary_dim; }

  /// Throws ErrorKind::config naming `where` and the parameter if the configuration is unusable.
  void validate(std::string_view where = "RoPE") const {
    auto fin = [](double v) { return std::isfinite(v); };
    check(head_dim >= 2, ErrorKind::config, where, "head_dim = ", head_dim, " must be >= 2");
    check(rotary_dim >= 0 && rotary_dim <= head_dim, ErrorKind::config, where, "rotary_dim = ", rotary_dim,
          " must be in [0, head_dim = ", head_dim, "] (0 means head_dim)");
    const Index rd = resolved_rotary_dim();
    check(rd % 2 == 0, ErrorKind::config, where, "rotary_dim = ", rd, rotary_dim == 0 ? " (= head_dim)" : "",
          " must be even: dims are rotated in pairs");
    check(theta > 0 && fin(theta), ErrorKind::config, where, "theta (rope_theta) = ", theta,
          " must be > 0 and finite");
    check(max_position_embeddings >= 0, ErrorKind::config, where,
          "max_position_embeddings = ", max_position_embeddings, " must be >= 0");
    const RopeScaling& s = scaling;
    const char* type = to_string(s.type);
    check(frequencies == RopeFrequencies::standard || s.type == RopeType::none, ErrorKind::config, where,
          "the linspace frequency schedule takes no rope_scaling (got rope_type ", type, ")");
    if (s.type == RopeType::none) return;
    check(s.factor > 0 && fin(s.factor), ErrorKind::config, where, "rope_scaling factor = ", s.factor,
          " must be > 0 and finite (rope_type ", type, ")");
    check(s.original_max_position_embeddings >= 0, ErrorKind::config, where,
          "original_max_position_embeddings = ", s.original_max_position_embeddings,
          " must be >= 0 (0 = unset)");
    switch (s.type) {
      case RopeType::none:
      case RopeType::linear:
        break;
      case RopeType::dynamic:
        check(max_position_embeddings > 0, ErrorKind::config, where,
              "rope_type dynamic needs max_position_embeddings > 0 (the length beyond which theta grows)");
        check(rd > 2, ErrorKind::config, where,
              "rope_type dynamic needs rotary_dim > 2 (exponent d / (d - 2)), got ", rd);
        break;
      case RopeType::yarn:
        check(s.original_max_position_embeddings > 0 || max_position_embeddings > 0, ErrorKind::config, where,
              "rope_type yarn needs original_max_position_embeddings (or max_position_embeddings) > 0");
        check(s.beta_fast > 0 && fin(s.beta_fast), ErrorKind::config, where, "yarn beta_fast = ", s.beta_fast,
              " must be > 0 and finite");
        check(s.beta_slow > 0 && fin(s.beta_slow), ErrorKind::config, where, "yarn beta_slow = ", s.beta_slow,
              " must be > 0 and finite");
        check(s.mscale >= 0 && fin(s.mscale), ErrorKind::config, where, "yarn mscale = ", s.mscale,
              " must be >= 0 and finite (0 = unset)");
        check(s.mscale_all_dim >= 0 && fin(s.mscale_all_dim), ErrorKind::config, where,
              "yarn mscale_all_dim = ", s.mscale_all_dim, " must be >= 0 and finite (0 = unset)");
        if (s.attention_factor)
          check(*s.attention_factor > 0 && fin(*s.attention_factor), ErrorKind::config, where,
                "yarn attention_factor = ", *s.attention_factor, " must be > 0 and finite");
        break;
      case RopeType::llama3:
        check(s.original_max_position_embeddings > 0, ErrorKind::config, where,
              "rope_type llama3 needs original_max_position_embeddings > 0 (Llama 3.1: 8192)");
        check(s.low_freq_factor > 0 && fin(s.low_freq_factor), ErrorKind::config, where,
              "llama3 low_freq_factor = ", s.low_freq_factor, " must be > 0 and finite");
        check(s.high_freq_factor > s.low_freq_factor && fin(s.high_freq_factor), ErrorKind::config, where,
              "llama3 high_freq_factor = ", s.high_freq_factor,
              " must be > low_freq_factor = ", s.low_freq_factor);
        break;
    }
  }
};

/// YaRN's magnitude correction, HF `get_mscale` / DeepSeek `yarn_get_mscale`:
/// 0.1 * mscale * ln(scale) + 1, and 1 for scale <= 1. RotaryEmbedding uses it for yarn's
/// attention_scaling; DeepSeek-V2/V3 attention also multiplies its softmax scale by
/// yarn_get_mscale(factor, mscale_all_dim)^2 (transformers models/deepseek_v3, DeepseekV3Attention).
inline double yarn_get_mscale(double scale, double mscale = 1.0) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace detail {
namespace rope {

/// Rounds to R and keeps the compiler from fusing across the value (GCC contracts a * b + c into an
/// FMA under -std=gnu++17 even across statements). The float path uses it after every operation so
/// that it reproduces PyTorch's float32 op sequence one rounding at a time. Setup code only.
template <class R>
inline R fl(R v) {
  if constexpr (sizeof(R) == sizeof(float)) {
    volatile R t = v;
    return t;
  } else {
    return v;
  }
}

/// A buffer of n elements: on the stack up to N, else on the heap.
template <class T, std::size_t N = 256>
class Scratch {
 public:
  explicit Scratch(std::size_t n) : p_(small_) {
    if (n > N) {
      big_.resize(n);
      p_ = big_.data();
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() = default;
  T* data() noexcept { return p_; }

 private:
  T small_[N];
  std::vector<T> big_;
  T* p_;
};

/// 1 / base^(torch.linspace(0, 1, d/2)[k]) in precision R: linspace's float32 values (start + step * k
/// in the first half, end - step * (d/2 - 1 - k) in the second), pow in double and rounded.
template <class R>
void linspace_inv_freq(double base, Index d, R* out) {
  const Index half = d / 2;
  for (Index k = 0; k < half; ++k) {
    R lin = R(0);
    if (half > 1) {
      const R step = R(1) / static_cast<R>(half - 1);
      lin = k < half / 2 ? step * static_cast<R>(k) : R(1) - step * static_cast<R>(half - 1 - k);
    }
    out[k] = R(1) / static_cast<R>(std::pow(base, static_cast<double>(lin)));
  }
}

/// HF `_compute_default_rope_parameters`: 1 / base^(arange(0, d, 2).float() / d), float32 ops.
/// `base` is the float32 (or double) value of the pow base.
template <class R>
void default_inv_freq(R base, Index d, R* out) {
  for (Index k = 0; k < d / 2; ++k) {
    const R e = fl<R>(static_cast<R>(2 * k) / static_cast<R>(d));
    const R p = fl<R>(static_cast<R>(std::pow(static_cast<double>(base), static_cast<double>(e))));
    out[k] = fl<R>(R(1) / p);
  }
}

}  // namespace rope
}  // namespace detail

/// Rotary position embedding with HF-compatible frequencies; see the file comment. Immutable after
/// construction (safe to share between threads and sequences).
class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const RopeConfig& cfg) : cfg_(cfg) {
    cfg_.validate(kWhere);
    rotary_dim_ = cfg_.resolved_rotary_dim();
    inv_freq_.resize(static_cast<std::size_t>(rotary_dim_ / 2));
    inv_freq_d_.resize(inv_freq_.size());
    compute_inv_freq<float>(-1, inv_freq_.data());
    compute_inv_freq<double>(-1, inv_freq_d_.data());
    attention_scaling_ = compute_attention_scaling();
  }

  const RopeConfig& config() const noexcept { return cfg_; }
  Index head_dim() const noexcept { return cfg_.head_dim; }
  Index rotary_dim() const noexcept { return rotary_dim_; }
  RopeLayout layout() const noexcept { return cfg_.layout; }

  /// HF's `inv_freq` buffer after construction, float32 [rotary_dim / 2] (for dynamic: the
  /// frequencies for sequences up to max_position_embeddings).
  const std::vector<float>& inv_freq() const noexcept { return inv_freq_; }

  /// The frequencies HF uses in a forward call whose max position id + 1 is seq_len (differs from
  /// inv_freq() only for dynamic with seq_len > max_position_embeddings). [rotary_dim / 2]
  std::vector<float> inv_freq_for(Index seq_len) const {
    std::vector<float> v(inv_freq_.size());
    inv_freq_for(seq_len, v.data());
    return v;
  }
  /// Same into out[rotary_dim / 2]; T = double computes in double.
  template <class T>
  void inv_freq_for(Index seq_len, T* out) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
    if (dynamic_grows(seq_len)) {
      compute_inv_freq<T>(seq_len, out);
      return;
    }
    const auto& src = base_freq<T>();
    std::copy(src.begin(), src.end(), out);
  }

  /// The factor HF multiplies cos and sin by (yarn's attention factor; 1 for the other types).
  /// Applying it to both q and k scales the logits by attention_scaling^2, as HF does.
  double attention_scaling() const noexcept { return attention_scaling_; }

  /// cos/sin [rotary_dim / 2] of one position, attention_scaling applied. seq_len selects the dynamic
  /// NTK frequencies; by default position + 1 (HF's value for a one-token decode step).
  template <class T>
  void cos_sin(std::int64_t position, T* cos, T* sin, Index seq_len = -1) const {
    check(position >= 0 && position < (std::int64_t(1) << 62), ErrorKind::invalid_argument, kWhere,
          "position = ", position, " must be >= 0 (and < 2^62)");
    check(cos != nullptr && sin != nullptr, ErrorKind::invalid_argument, kWhere,
          "null cos/sin output pointer");
    detail::rope::Scratch<T> inv(inv_freq_.size());
    inv_freq_for<T>(seq_len < 0 ? static_cast<Index>(position) + 1 : seq_len, inv.data());
    angles(position, inv.data(), cos, sin);
  }

  /// cos/sin tables for n positions: row i of cos and sin ([n, rotary_dim / 2]) is position
  /// positions[i]. Compute once per forward pass and reuse for q and k of every layer with
  /// apply_rotary(). seq_len: as in apply().
  template <class T>
  void cos_sin_table(const std::int64_t* positions /* [n] */, Index n,
                     MatrixRef<T> cos /* [n, rotary_dim/2] */, MatrixRef<T> sin /* [n, rotary_dim/2] */,
                     Index seq_len = -1) const {
    const Index half = rotary_dim_ / 2;
    check(n >= 0, ErrorKind::invalid_argument, kWhere, "n = ", n, " must be >= 0");
    check_shape(kWhere, "cos", cos.rows(), cos.cols(), n, half);
    check_shape(kWhere, "sin", sin.rows(), sin.cols(), n, half);
    if (n == 0) return;
    const Index len = checked_seq_len(positions, n, seq_len);
    detail::rope::Scratch<T> inv(static_cast<std::size_t>(half));
    inv_freq_for<T>(len, inv.data());
    const T* f = inv.data();
    ops::detail::for_each_row(n, half, [&](Index i) {
      angles(positions[i], f, ops::detail::row(cos, i), ops::detail::row(sin, i));
    });
  }

  /// Rotates, in place, the first rotary_dim dims of each of the n_heads heads of every row of x
  /// (dims rotary_dim..head_dim of each head are untouched). Row i is at position positions[i] >= 0.
  /// The dynamic-NTK frequencies are those of seq_len = max(positions) + 1 (HF semantics).
  template <class T>
  void apply(MatrixRef<T> x /* [T, n_heads * head_dim] */, Index n_heads,
             const std::int64_t* positions /* [T] */) const {
    apply<T>(x, n_heads, positions, -1);
  }

  /// Rows at consecutive positions pos0, pos0 + 1, ... (a sequence or a decode step); the dynamic-NTK
  /// frequencies are those of seq_len = pos0 + rows.
  template <class T>
  void apply_from(MatrixRef<T> x /* [T, n_heads * head_dim] */, Index n_heads, std::int64_t pos0) const {
    check_apply(x, n_heads);
    check_pos0(pos0, x.rows());
    Target<T> t[1] = {{&x, n_heads}};
    rotate_rows<T>(t, 1, x.rows(), static_cast<Index>(pos0) + x.rows(), [pos0](Index i) { return pos0 + i; });
  }

  /// The same for q and k of one sequence ([T, q_heads * head_dim], [T, k_heads * head_dim]): one cos/sin
  /// computation for both.
  template <class T>
  void apply_from(MatrixRef<T> q, Index q_heads, MatrixRef<T> k, Index k_heads, std::int64_t pos0) const {
    check_apply(q, q_heads, "q");
    check_apply(k, k_heads, "k");
    check_shape(kWhere, "k", k.rows(), k.cols(), q.rows(), k_heads * cfg_.head_dim);
    check_pos0(pos0, q.rows());
    Target<T> t[2] = {{&q, q_heads}, {&k, k_heads}};
    rotate_rows<T>(t, 2, q.rows(), static_cast<Index>(pos0) + q.rows(), [pos0](Index i) { return pos0 + i; });
  }

  /// Same with an explicit seq_len for the dynamic-NTK frequencies (< 0: max(positions) + 1).
  template <class T>
  void apply(MatrixRef<T> x /* [T, n_heads * head_dim] */, Index n_heads,
             const std::int64_t* positions /* [T] */, Index seq_len) const {
    check_apply(x, n_heads);
    if (x.rows() == 0) return;
    const Index len = checked_seq_len(positions, x.rows(), seq_len);
    Target<T> t[1] = {{&x, n_heads}};
    rotate_rows<T>(t, 1, x.rows(), len, [positions](Index i) { return positions[i]; });
  }

 private:
  static constexpr const char* kWhere = "RoPE";

  template <class T>
  struct Target {
    MatrixRef<T>* x;
    Index heads;
  };

  template <class T>
  void check_apply(const MatrixRef<T>& x, Index n_heads, const char* what = "x") const {
    check(n_heads >= 1, ErrorKind::invalid_argument, kWhere, "n_heads = ", n_heads, " must be >= 1");
    check_shape(kWhere, what, x.rows(), x.cols(), -1, n_heads * cfg_.head_dim);
  }
  static void check_pos0(std::int64_t pos0, Index rows) {
    check(pos0 >= 0 && pos0 < (std::int64_t(1) << 62) - rows, ErrorKind::invalid_argument, kWhere, "pos0 = ", pos0,
          " must be >= 0 (and < 2^62)");
  }

  // Rotates row i of every target at position pos(i), with the frequencies of sequence length len.
  template <class T, class Pos>
  void rotate_rows(Target<T>* targets, int n_targets, Index rows, Index len, Pos pos) const {
    if (rows == 0) return;
    const auto half = static_cast<std::size_t>(rotary_dim_ / 2);
    detail::rope::Scratch<T> inv(half);
    inv_freq_for<T>(len, inv.data());
    const T* f = inv.data();
    const auto hd = static_cast<std::size_t>(cfg_.head_dim);
    const bool interleaved = cfg_.layout == RopeLayout::interleaved;
    ops::detail::for_each_row(rows, targets[0].x->cols(), [&](Index i) {
      detail::rope::Scratch<T, 512> cs(2 * half);
      T* c = cs.data();
      T* s = c + half;
      angles(pos(i), f, c, s);
      for (int t = 0; t < n_targets; ++t) {
        T* r = ops::detail::row(*targets[t].x, i);
        for (Index h = 0; h < targets[t].heads; ++h) {
          T* head = r + static_cast<std::size_t>(h) * hd;
          if (interleaved)
            kernels::rope_interleaved(head, c, s, half);
          else
            kernels::rope_half(head, c, s, half);
        }
      }
    });
  }

  template <class T>
  const std::vector<T>& base_freq() const noexcept {
    if constexpr (std::is_same_v<T, float>)
      return inv_freq_;
    else
      return inv_freq_d_;
  }

  bool dynamic_grows(Index seq_len) const noexcept {
    return cfg_.scaling.type == RopeType::dynamic && seq_len > cfg_.max_position_embeddings;
  }

  /// Validates positions (non-null, >= 0) and returns the seq_len to use.
  Index checked_seq_len(const std::int64_t* positions, Index n, Index seq_len) const {
    check(positions != nullptr, ErrorKind::invalid_argument, kWhere, "positions is null for ", n, " rows");
    std::int64_t mx = 0;
    for (Index i = 0; i < n; ++i) {
      check(positions[i] >= 0 && positions[i] < (std::int64_t(1) << 62), ErrorKind::invalid_argument, kWhere,
            "positions[", i, "] = ", positions[i], " must be >= 0 (and < 2^62)");
      mx = std::max(mx, positions[i]);
    }
    return seq_len >= 0 ? seq_len : static_cast<Index>(mx) + 1;
  }

  /// cos/sin of position p for the frequencies f: HF's float32 angle float(p) * f rounded, cos/sin
  /// correctly rounded, times float(attention_scaling); all in double for T = double.
  template <class T>
  void angles(std::int64_t p, const T* f, T* c, T* s) const {
    const Index half = rotary_dim_ / 2;
    const T pos = static_cast<T>(p);
    const T att = static_cast<T>(attention_scaling_);
    for (Index k = 0; k < half; ++k) {
      const T a = pos * f[k];  // no add follows: nothing to contract
      const T ck = static_cast<T>(std::cos(static_cast<double>(a)));
      const T sk = static_cast<T>(std::sin(static_cast<double>(a)));
      c[k] = ck * att;
      s[k] = sk * att;
    }
  }

  double compute_attention_scaling() const {
    const RopeScaling& s = cfg_.scaling;
    if (s.type != RopeType::yarn) return 1.0;
    if (s.attention_factor) return *s.attention_factor;
    if (s.mscale != 0 && s.mscale_all_dim != 0)
      return yarn_get_mscale(s.factor, s.mscale) / yarn_get_mscale(s.factor, s.mscale_all_dim);
    return yarn_get_mscale(s.factor, 1.0);
  }

  /// inv_freq in precision R for a forward call of length seq_len (< 0: HF's init call, seq_len None).
  template <class R>
  void compute_inv_freq(Index seq_len, R* out) const {
    using detail::rope::fl;
    const RopeScaling& s = cfg_.scaling;
    const Index d = rotary_dim_;
    const Index half = d / 2;
    const double theta = cfg_.theta;
    if (cfg_.frequencies == RopeFrequencies::linspace) {
      detail::rope::linspace_inv_freq<R>(theta, d, out);
      return;
    }
    switch (s.type) {
      case RopeType::none:
        detail::rope::default_inv_freq<R>(static_cast<R>(theta), d, out);
        return;
      case RopeType::linear:  // inv_freq /= factor
        detail::rope::default_inv_freq<R>(static_cast<R>(theta), d, out);
        for (Index k = 0; k < half; ++k) out[k] = fl<R>(out[k] / static_cast<R>(s.factor));
        return;
      case RopeType::dynamic: {
        const double exponent = static_cast<double>(d) / static_cast<double>(d - 2);
        const Index maxpos = cfg_.max_position_embeddings;
        R base;
        if (seq_len <= maxpos || std::is_same_v<R, double>) {
          // HF init path (Python floats): base * ((factor * L / max_pos) - (factor - 1)) ** (d / (d - 2)).
          const double L = static_cast<double>(std::max(seq_len, maxpos));
          const double g = s.factor * L / static_cast<double>(maxpos) - (s.factor - 1);
          base = static_cast<R>(theta * std::pow(g, exponent));
        } else {
          // HF growth path: seq_len is a 0-dim int64 tensor, so the same expression runs in float32.
          R g = fl<R>(static_cast<R>(s.factor) * static_cast<R>(seq_len));
          g = fl<R>(g / static_cast<R>(maxpos));
          g = fl<R>(g - static_cast<R>(s.factor - 1));
          g = fl<R>(static_cast<R>(std::pow(static_cast<double>(g), exponent)));  // std::pow(float, double)
          base = fl<R>(static_cast<R>(theta) * g);
        }
        detail::rope::default_inv_freq<R>(base, d, out);
        return;
      }
      case RopeType::yarn: {
        const double orig =
            static_cast<double>(s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings
                                                                       : cfg_.max_position_embeddings);
        // Correction range in Python floats: dim of the frequency with num_rotations turns over orig.
        const double pi = 3.14159265358979323846;
        auto correction_dim = [&](double rot) {
          return (static_cast<double>(d) * std::log(orig / (rot * 2 * pi))) / (2 * std::log(theta));
        };
        double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
        if (s.truncate) {
          low = std::floor(low);
          high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, static_cast<double>(d - 1));
        if (low == high) high += 0.001;  // HF: prevent singularity
        const R lo = static_cast<R>(low), span = static_cast<R>(high - low),
                factor = static_cast<R>(s.factor);
        const R base = static_cast<R>(theta);
        for (Index k = 0; k < half; ++k) {
          const R e = fl<R>(static_cast<R>(2 * k) / static_cast<R>(d));
          const R pos_freq =
              fl<R>(static_cast<R>(std::pow(static_cast<double>(base), static_cast<double>(e))));
          const R extrapolation = fl<R>(R(1) / pos_freq);
          const R interpolation = fl<R>(R(1) / fl<R>(factor * pos_freq));
          R ramp = fl<R>(fl<R>(static_cast<R>(k) - lo) / span);
          ramp = std::min(std::max(ramp, R(0)), R(1));
          const R extrapolation_factor = fl<R>(R(1) - ramp);
          const R a = fl<R>(interpolation * fl<R>(R(1) - extrapolation_factor));
          const R b = fl<R>(extrapolation * extrapolation_factor);
          out[k] = fl<R>(a + b);
        }
        return;
      }
      case RopeType::llama3: {
        detail::rope::default_inv_freq<R>(static_cast<R>(theta), d, out);
        const double old_len = static_cast<double>(s.original_max_position_embeddings);
        const R low_wavelen = static_cast<R>(old_len / s.low_freq_factor);
        const R high_wavelen = static_cast<R>(old_len / s.high_freq_factor);
        const R two_pi = static_cast<R>(2 * 3.14159265358979323846);
        const R factor = static_cast<R>(s.factor), old = static_cast<R>(old_len);
        const R lff = static_cast<R>(s.low_freq_factor),
                span = static_cast<R>(s.high_freq_factor - s.low_freq_factor);
        for (Index k = 0; k < half; ++k) {
          const R f = out[k];
          // `2 * math.pi / inv_freq` and `old_context_len / wavelen` are torch's rtruediv:
          // reciprocal, then multiply.
          const R wavelen = fl<R>(fl<R>(R(1) / f) * two_pi);
          const R scaled = wavelen > low_wavelen ? fl<R>(f / factor) : f;
          const R smooth = fl<R>(fl<R>(fl<R>(fl<R>(R(1) / wavelen) * old) - lff) / span);
          const R smoothed =
              fl<R>(fl<R>(fl<R>(fl<R>(R(1) - smooth) * scaled) / factor) + fl<R>(smooth * scaled));
          const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
          out[k] = medium ? smoothed : scaled;
        }
        return;
      }
    }
  }

  RopeConfig cfg_;
  Index rotary_dim_ = 0;
  std::vector<float> inv_freq_;     // [rotary_dim / 2], HF's buffer
  std::vector<double> inv_freq_d_;  // [rotary_dim / 2], the same formulas in double
  double attention_scaling_ = 1.0;
};

/// Rotates, in place, the first 2 * cos.cols() dims of every head of every row of x by the given
/// per-row tables (from RotaryEmbedding::cos_sin_table, or any other source). The op behind
/// RotaryEmbedding::apply, for callers that share one table between q, k and layers.
template <class T>
void apply_rotary(MatrixRef<T> x /* [T, n_heads * head_dim] */, Index n_heads, Index head_dim,
                  RopeLayout layout, ConstMatrixRef<T> cos /* [T, rotary_dim/2] */,
                  ConstMatrixRef<T> sin /* [T, rotary_dim/2] */) {
  constexpr const char* where = "RoPE apply_rotary";
  check(n_heads >= 1 && head_dim >= 1, ErrorKind::invalid_argument, where, "n_heads = ", n_heads,
        " and head_dim = ", head_dim, " must be >= 1");
  check_shape(where, "x", x.rows(), x.cols(), -1, n_heads * head_dim);
  check_shape(where, "cos", cos.rows(), cos.cols(), x.rows(), -1);
  check_shape(where, "sin", sin.rows(), sin.cols(), x.rows(), cos.cols());
  check(2 * cos.cols() <= head_dim, ErrorKind::shape_mismatch, where, "cos has ", cos.cols(),
        " columns: rotary_dim = ", 2 * cos.cols(), " exceeds head_dim = ", head_dim);
  const auto half = static_cast<std::size_t>(cos.cols());
  if (half == 0) return;
  const auto hd = static_cast<std::size_t>(head_dim);
  ops::detail::for_each_row(x.rows(), x.cols(), [&](Index i) {
    T* r = ops::detail::row(x, i);
    const T* c = ops::detail::row(cos, i);
    const T* s = ops::detail::row(sin, i);
    for (Index h = 0; h < n_heads; ++h) {
      if (layout == RopeLayout::interleaved)
        kernels::rope_interleaved(r + static_cast<std::size_t>(h) * hd, c, s, half);
      else
        kernels::rope_half(r + static_cast<std::size_t>(h) * hd, c, s, half);
    }
  });
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
