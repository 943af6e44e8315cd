#pragma once
// BitLinear: the ternary linear layer of BitNet b1.58 (Ma et al. 2024, "The Era of 1-bit LLMs",
// arXiv:2402.17764; BitNet b1.58 2B4T, arXiv:2504.12285), with the semantics of Hugging Face
// transformers' integration (integrations/bitnet.py: WeightQuant, ActQuant, BitLinear,
// AutoBitLinear, pack_weights / unpack_weights), in float32:
//
//   weights (absmean, once):  s_w = 1 / max(mean |W|, 1e-5);  W_t = clamp(round(W s_w), -1, 1)
//   activations (per token):  s_x = 127 / max(max_k |x_k|, 1e-5);  x_q = clamp(round(x s_x), -128, 127)
//                             (127 / m evaluated as PyTorch does: (1 / m) * 127, two roundings)
//   output:                   y = (x_q . W_t) / (s_x * s_w)  (+ bias)
// round() is round-half-to-even (torch.round); x_q . W_t is an exact int32 accumulation by the
// ternary kernels (kernels/ternary.hpp), so y equals transformers' BitLinear.forward in float32 bit
// for bit (its F.linear of integer-valued floats is exact, then the same division).
//
// Weight scale conventions of packed checkpoints (`<prefix>.weight` U8 + `<prefix>.weight_scale`):
//   BitScale::divide    (transformers BitLinear, BitNetQuantConfig linear_class "bitlinear", the
//                       default): y = acc / (s_x * weight_scale) + bias. weight_scale is the DIVISOR
//                       s_w = 1 / mean|W| as WeightQuant computes it (post_quant_process divides by it).
//   BitScale::multiply  (AutoBitLinear, linear_class "autobitlinear", quantization_mode "offline"):
//                       y = (acc / s_x + bias) * weight_scale: weight_scale is the MULTIPLIER mean|W|,
//                       and it scales the bias too (AutoBitLinear.forward is F.linear(x, W, bias) *
//                       weight_scale). transformers sums x_q / s_x times W_t in float, which is
//                       order-dependent: equal to this up to float rounding, not bit for bit.
// Read with the wrong convention, outputs are off by a factor weight_scale^2: take it from the
// checkpoint's config.json (quantization_config.linear_class; absent means "bitlinear").
//
// Hugging Face packed layout (pack_weights): uint8 [ceil(out / 4), in]; packed row r holds original
// rows r, r + R, r + 2R, r + 3R (R = ceil(out / 4)) in bits [0,2), [2,4), [4,6), [6,8) as w + 1.
// (transformers' BitLinear registers the buffer as [out // 4, in], so it needs out % 4 == 0; both
// shapes agree then. Codes 3 are rejected.) Loading repacks into one of our formats:
//   TernaryFormat::tq2  2.0 bpw, fastest (kernels/ref/ternary.hpp BlockTQ2)
//   TernaryFormat::tq1  1.6 bpw + row padding to 160 (1.625 at in = 4096), ~2x the decode work
// Full-precision weights (F32/F16/BF16/F64 [out, in]) are quantized on load as WeightQuant does
// (AutoBitLinear with quantization_mode "online"); mean |W| is summed in double and rounded to float,
// so it may differ from torch's float32 reduction in the last bit.
//
// Optional input RMSNorm (BitNetQuantConfig.use_rms_norm: a LlamaRMSNorm(in_features) inside each
// BitLinear, checkpoint `<prefix>.rms_norm.weight`). BitNet b1.58 2B4T itself instead has the
// sub-norms of the decoder layer (ffn/bitnet_block.hpp).
//
// Special values: a token row holding NaN or inf gives a NaN output row (NaN propagates); an all-zero
// row gives the bias (s_x = 127 / 1e-5, x_q = 0). Threads split the output features; integer accumulation makes
// the result independent of the thread count. Benchmarks: bench/bench_bitnet.cpp.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/weight_memory.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../kernels/ternary.hpp"
#include "../norm/rms_norm.hpp"

namespace eigenformer {

/// Packed ternary weight formats (kernels/ref/ternary.hpp).
enum class TernaryFormat {
  tq2,  ///< 2 bits per weight, blocks of 128 (the fastest kernels)
  tq1,  ///< 1.6 bits per weight (5 per byte, base 3), blocks of 160
};

inline const char* to_string(TernaryFormat f) noexcept { return f == TernaryFormat::tq2 ? "tq2" : "tq1"; }

/// How the weight scale is applied (see the file comment).
enum class BitScale {
  divide,    ///< y = acc / (s_x * weight_scale) + b     transformers BitLinear ("bitlinear"); quantize-on-load
  multiply,  ///< y = (acc / s_x + b) * weight_scale     transformers AutoBitLinear offline ("autobitlinear")
};

inline const char* to_string(BitScale s) noexcept { return s == BitScale::divide ? "divide" : "multiply"; }

/// Hugging Face BitNet packing (transformers integrations/bitnet.py pack_weights): ternary w
/// [rows, cols] -> uint8 [ceil(rows / 4), cols] (see the file comment for the bit layout).
inline std::vector<std::uint8_t> hf_pack_ternary(const std::int8_t* w, Index rows, Index cols) {
  const Index R = (rows + 3) / 4;
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(R * cols), 0);
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      const unsigned q = static_cast<unsigned>(w[r * cols + c] + 1);
      packed[static_cast<std::size_t>((r % R) * cols + c)] |= static_cast<std::uint8_t>(q << (2 * (r / R)));
    }
  return packed;
}

/// Inverse of hf_pack_ternary (transformers unpack_weights), keeping the first `rows` rows: packed
/// [ceil(rows / 4), cols] -> w [rows, cols]. Throws ErrorKind::format naming `where` on a code 3.
inline void hf_unpack_ternary(const std::uint8_t* packed, Index rows, Index cols, std::int8_t* w,
                              std::string_view where = "hf_unpack_ternary") {
  const Index R = (rows + 3) / 4;
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      const unsigned q = (packed[(r % R) * cols + c] >> (2 * (r / R))) & 3u;
      if (q == 3)
        fail(ErrorKind::format, where, "packed ternary weight at row ", r, ", column ", c,
             " has the code 3 (only 0, 1, 2 = -1, 0, +1 are valid)");
      w[r * cols + c] = static_cast<std::int8_t>(static_cast<int>(q) - 1);
    }
}

/// WeightQuant's absmean ternarization of w[0, n): returns s_w = 1 / max(mean|w|, 1e-5) and writes
/// t = clamp(round_half_even(w * s_w), -1, 1) (float32 ops as PyTorch; the mean is summed in double).
/// Throws ErrorKind::invalid_argument naming `where` if a weight is NaN or infinite.
inline float absmean_ternarize(const float* w, std::size_t n, std::int8_t* t, std::string_view where = "BitLinear") {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) {
    check(std::isfinite(w[i]), ErrorKind::invalid_argument, where, "weight ", i, " is ", w[i],
          ": ternary quantization needs finite weights");
    s += std::fabs(static_cast<double>(w[i]));
  }
  const float mean = n ? static_cast<float>(s / static_cast<double>(n)) : 0.0f;
  const float scale = 1.0f / std::max(mean, 1e-5f);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(w[i] * scale);
    t[i] = static_cast<std::int8_t>(v < -1.0f ? -1 : (v > 1.0f ? 1 : v));
  }
  return scale;
}

inline namespace EIGENFORMER_ABI_NAMESPACE {

/// A ternary matrix [rows, cols] packed in one of the formats, 64-byte aligned (2 MiB aligned and on
/// transparent huge pages where available from 2 MiB on: core/weight_memory.hpp). Immutable; copies
/// share the packed bytes.
class TernaryMatrix {
 public:
  /// Largest column count: the int32 accumulators hold 256 * padded columns.
  static constexpr Index kMaxCols = Index(1) << 22;

  TernaryMatrix() = default;

  /// Packs w [rows, cols] (row-major, values in {-1, 0, 1}; anything else throws).
  TernaryMatrix(const std::int8_t* w, Index rows, Index cols, TernaryFormat format, std::string_view where = "TernaryMatrix")
      : format_(format), rows_(rows), cols_(cols) {
    check(rows > 0 && cols > 0 && cols <= kMaxCols, ErrorKind::config, where, "ternary matrix shape ",
          shape_str({rows, cols}), ": both sizes must be >= 1 and cols <= ", kMaxCols);
    for (Index i = 0; i < rows * cols; ++i)
      check(w[i] >= -1 && w[i] <= 1, ErrorKind::invalid_argument, where, "weight ", i / cols, ", ", i % cols, " = ",
            int(w[i]), " is not ternary (-1, 0, 1)");
    blocks_ = static_cast<Index>(format == TernaryFormat::tq2 ? kernels::blocks_per_row<kernels::BlockTQ2>(static_cast<std::size_t>(cols))
                                                             : kernels::blocks_per_row<kernels::BlockTQ1>(static_cast<std::size_t>(cols)));
    bytes_ = static_cast<std::size_t>(rows * blocks_) * 32;
    data_ = allocate_weight_bytes(bytes_);  // huge pages for large matrices (core/weight_memory.hpp)
    for (Index r = 0; r < rows; ++r) {
      const std::int8_t* row = w + r * cols;
      if (format == TernaryFormat::tq2)
        kernels::ref::pack_row(row, static_cast<std::size_t>(cols), blocks<kernels::BlockTQ2>() + r * blocks_);
      else
        kernels::ref::pack_row(row, static_cast<std::size_t>(cols), blocks<kernels::BlockTQ1>() + r * blocks_);
    }
    auto sums = std::make_shared<std::vector<std::int32_t>>(static_cast<std::size_t>(rows));
    if (format == TernaryFormat::tq2)
      kernels::ref::digit_sums(blocks<kernels::BlockTQ2>(), static_cast<std::size_t>(rows),
                               static_cast<std::size_t>(blocks_), sums->data());
    else
      kernels::ref::digit_sums(blocks<kernels::BlockTQ1>(), static_cast<std::size_t>(rows),
                               static_cast<std::size_t>(blocks_), sums->data());
    digit_sums_ = std::move(sums);
  }

  TernaryFormat format() const noexcept { return format_; }
  Index rows() const noexcept { return rows_; }
  Index cols() const noexcept { return cols_; }
  Index blocks_per_row() const noexcept { return blocks_; }
  /// Activations per token the kernels read: blocks_per_row * weights per block.
  Index padded_cols() const noexcept { return blocks_ * weights_per_block(format_); }
  /// Packed bytes (the weights only; the kernels also read 4 bytes per row of digit_sums()).
  std::size_t bytes() const noexcept { return bytes_; }
  /// Per row, the sum of its digits w + 1 over its blocks (kernels::ref::digit_sums; derived from the
  /// weights when they are packed).
  const std::int32_t* digit_sums() const noexcept { return digit_sums_ ? digit_sums_->data() : nullptr; }
  /// Stored bits per weight: bytes * 8 / (rows * cols).
  double bits_per_weight() const noexcept {
    return rows_ > 0 && cols_ > 0 ? static_cast<double>(bytes_) * 8.0 / static_cast<double>(rows_ * cols_) : 0.0;
  }
  const std::uint8_t* data() const noexcept { return data_.get(); }
  bool empty() const noexcept { return !data_; }

  static Index weights_per_block(TernaryFormat f) noexcept {
    return static_cast<Index>(f == TernaryFormat::tq2 ? kernels::BlockTQ2::kWeights : kernels::BlockTQ1::kWeights);
  }

  /// The ternary values [rows, cols].
  Matrix<std::int8_t> unpack() const {
    Matrix<std::int8_t> w(rows_, cols_);
    for (Index r = 0; r < rows_; ++r) {
      if (format_ == TernaryFormat::tq2)
        kernels::ref::unpack_row(blocks<kernels::BlockTQ2>() + r * blocks_, static_cast<std::size_t>(cols_), w.row(r).data());
      else
        kernels::ref::unpack_row(blocks<kernels::BlockTQ1>() + r * blocks_, static_cast<std::size_t>(cols_), w.row(r).data());
    }
    return w;
  }

  /// y[t * ldy + r] = sum_k w[r][k] x[t * ldx + k] for rows [r0, r1) and t < tokens (x rows padded to
  /// padded_cols() with zeros; x_sum[t] their sums). y points at row r = 0 of token 0.
  void multiply(const std::int8_t* x, std::size_t ldx, const std::int32_t* x_sum, Index tokens, std::int32_t* y,
                std::size_t ldy, Index r0, Index r1) const {
    const auto T = static_cast<std::size_t>(tokens), nb = static_cast<std::size_t>(blocks_);
    const auto n = static_cast<std::size_t>(r1 - r0), off = static_cast<std::size_t>(r0);
    const std::int32_t* dsum = digit_sums() + off;
    if (format_ == TernaryFormat::tq2)
      kernels::ternary_gemm(blocks<kernels::BlockTQ2>() + off * nb, n, nb, x, ldx, x_sum, dsum, T, y + off,
                            ldy);
    else
      kernels::ternary_gemm(blocks<kernels::BlockTQ1>() + off * nb, n, nb, x, ldx, x_sum, dsum, T, y + off,
                            ldy);
  }

  /// The same through the scalar twins (tests, benchmarks).
  void multiply_ref(const std::int8_t* x, std::size_t ldx, Index tokens, std::int32_t* y, std::size_t ldy) const {
    const auto T = static_cast<std::size_t>(tokens), nb = static_cast<std::size_t>(blocks_);
    if (format_ == TernaryFormat::tq2)
      kernels::ref::ternary_gemm(blocks<kernels::BlockTQ2>(), static_cast<std::size_t>(rows_), nb, x, ldx, T, y, ldy);
    else
      kernels::ref::ternary_gemm(blocks<kernels::BlockTQ1>(), static_cast<std::size_t>(rows_), nb, x, ldx, T, y, ldy);
  }

 private:
  template <class Block>
  Block* blocks() const noexcept {
    return reinterpret_cast<Block*>(data_.get());
  }

  TernaryFormat format_ = TernaryFormat::tq2;
  Index rows_ = 0, cols_ = 0, blocks_ = 0;
  std::size_t bytes_ = 0;
  std::shared_ptr<std::uint8_t> data_;
  std::shared_ptr<const std::vector<std::int32_t>> digit_sums_;
};

/// Int8 activations of T tokens, as the ternary kernels read them (views into a Workspace).
struct QuantizedActivations {
  const std::int8_t* q = nullptr;  // [tokens, ld], zero past the true column count
  std::size_t ld = 0;
  const float* scale = nullptr;       // [tokens] s_x (NaN for a row with NaN or inf)
  const std::int32_t* sum = nullptr;  // [tokens] sum of each row's int8 values
  Index tokens = 0;
  Index cols = 0;  // true column count
};

class BitLinear {
 public:
  struct Config {
    Index in_features = 0;
    Index out_features = 0;
    bool bias = false;
    TernaryFormat format = TernaryFormat::tq2;
    BitScale packed_scale = BitScale::divide;  ///< convention of a packed checkpoint's weight_scale
    bool rms_norm = false;                     ///< BitNetQuantConfig.use_rms_norm
    double rms_norm_eps = 1e-6;                ///< BitNetQuantConfig.rms_norm_eps
  };

  BitLinear() = default;

  /// From ternary values w [out, in] (row-major, in {-1, 0, 1}), their weight scale in convention
  /// `conv`, and a bias [out] (or empty). cfg.rms_norm gives a unit-weight input norm.
  BitLinear(const Config& cfg, const std::int8_t* ternary, float weight_scale, BitScale conv, Vector<float> bias = {},
            std::string name = {})
      : cfg_(cfg), name_(std::move(name)), scale_(weight_scale), conv_(conv), bias_(std::move(bias)) {
    check_config(cfg_, name_);
    check(std::isfinite(weight_scale) && weight_scale > 0, ErrorKind::config, where(), "weight_scale = ", weight_scale,
          " must be finite and > 0");
    check(bias_.size() == 0 || bias_.size() == cfg_.out_features, ErrorKind::shape_mismatch, where(), "bias has ",
          bias_.size(), " entries, expected ", cfg_.out_features, " (out_features) or 0");
    check(!cfg_.bias || bias_.size() == cfg_.out_features, ErrorKind::config, where(),
          "cfg.bias is set but no bias was given");
    cfg_.bias = bias_.size() != 0;
    w_ = TernaryMatrix(ternary, cfg_.out_features, cfg_.in_features, cfg_.format, where());
    if (cfg_.rms_norm) norm_ = RMSNorm<float>({cfg_.in_features, cfg_.rms_norm_eps}, join_name(name_, "rms_norm"));
  }

  /// Quantizes full-precision weights [out, in] (absmean; WeightQuant / AutoBitLinear "online").
  static BitLinear quantize(const Config& cfg, ConstMatrixRef<float> weight, Vector<float> bias = {},
                            std::string name = {}) {
    check_config(cfg, name);
    const std::string w = layer_where("BitLinear", name);
    check_shape(w, "weight", weight.rows(), weight.cols(), cfg.out_features, cfg.in_features);
    const Matrix<float> dense = weight;  // contiguous
    std::vector<std::int8_t> t(static_cast<std::size_t>(dense.size()));
    const float s = absmean_ternarize(dense.data(), t.size(), t.data(), w);
    return BitLinear(cfg, t.data(), s, BitScale::divide, std::move(bias), std::move(name));
  }

  /// Loads `<prefix>.weight`: U8 [ceil(out / 4), in] packed by transformers (with
  /// `<prefix>.weight_scale` [1] or [], read in convention cfg.packed_scale), or F32/F16/BF16/F64
  /// [out, in] (quantized on load). Also `<prefix>.bias` [out] when cfg.bias and
  /// `<prefix>.rms_norm.weight` [in] when cfg.rms_norm.
  static BitLinear load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const std::string where = layer_where("BitLinear", prefix);
    const std::string wname = join_name(prefix, "weight");
    const TensorInfo& info = st.info(wname, where);
    Vector<float> bias;
    if (cfg.bias) bias = st.vector<float>(join_name(prefix, "bias"), cfg.out_features, where);
    BitLinear layer;
    if (info.dtype == Dtype::U8) {
      const Index R = (cfg.out_features + 3) / 4;
      check(info.shape.size() == 2 && info.shape[0] == R && info.shape[1] == cfg.in_features, ErrorKind::shape_mismatch,
            where, "packed weight ", json::quote(wname), " has shape ", shape_str(info.shape), ", expected [", R,
            ", ", cfg.in_features, "] (ceil(out_features / 4), in_features) for out_features = ", cfg.out_features);
      std::vector<std::int8_t> t(static_cast<std::size_t>(cfg.out_features * cfg.in_features));
      hf_unpack_ternary(st.data(info), cfg.out_features, cfg.in_features, t.data(), where);
      const std::string sname = join_name(prefix, "weight_scale");
      const TensorInfo& si = st.info(sname, where);
      check(si.numel() == 1 && si.shape.size() <= 1, ErrorKind::shape_mismatch, where, "weight scale ",
            json::quote(sname), " has shape ", shape_str(si.shape), ", expected [1] or []");
      const float scale = st.to_vector<float>(sname, where)[0];
      check(std::isfinite(scale) && scale > 0, ErrorKind::format, where, "weight scale ", json::quote(sname),
            " = ", scale, " must be finite and > 0");
      layer = BitLinear(cfg, t.data(), scale, cfg.packed_scale, std::move(bias), prefix);
    } else if (info.dtype == Dtype::F32 || info.dtype == Dtype::F16 || info.dtype == Dtype::BF16 ||
               info.dtype == Dtype::F64) {
      layer = quantize(cfg, st.matrix<float>(wname, cfg.out_features, cfg.in_features, where), std::move(bias), prefix);
    } else {
      fail(ErrorKind::dtype_mismatch, where, "weight ", json::quote(wname), " has dtype ", dtype_name(info.dtype),
           "; expected U8 (transformers' packed ternary weights) or F32/F16/BF16/F64 (quantized on load)");
    }
    if (cfg.rms_norm)
      layer.norm_ = RMSNorm<float>::load(st, join_name(prefix, "rms_norm"), {cfg.in_features, cfg.rms_norm_eps});
    return layer;
  }

  const Config& config() const noexcept { return cfg_; }
  Index in_features() const noexcept { return cfg_.in_features; }
  Index out_features() const noexcept { return cfg_.out_features; }
  const std::string& name() const noexcept { return name_; }
  TernaryFormat format() const noexcept { return w_.format(); }
  const TernaryMatrix& weights() const noexcept { return w_; }
  /// The weight scale as stored, in convention scale_convention().
  float weight_scale() const noexcept { return scale_; }
  BitScale scale_convention() const noexcept { return conv_; }
  bool has_bias() const noexcept { return bias_.size() != 0; }
  const Vector<float>& bias() const noexcept { return bias_; }  // [out] or empty
  bool has_rms_norm() const noexcept { return cfg_.rms_norm; }
  const RMSNorm<float>& rms_norm() const noexcept { return norm_; }
  /// Ternary values [out, in].
  Matrix<std::int8_t> ternary() const { return w_.unpack(); }
  /// Activations per token the kernels read (in_features rounded up to the format's block).
  Index padded_in_features() const noexcept { return w_.padded_cols(); }

  /// Quantizes x [T, cols] per token into the workspace, rows padded with zeros to `padded` >= cols.
  /// The views live until the caller's enclosing Workspace frame ends.
  static QuantizedActivations quantize_input(ConstMatrixRef<float> x, Index padded, Workspace<float>& ws) {
    const Index T = x.rows(), n = x.cols();
    check(padded >= n, ErrorKind::invalid_argument, "BitLinear::quantize_input", "padded = ", padded, " < columns ", n);
    QuantizedActivations a;
    auto* q = ws.template raw<std::int8_t>(static_cast<std::size_t>(T * padded));
    auto* s = ws.template raw<float>(static_cast<std::size_t>(T));
    auto* sum = ws.template raw<std::int32_t>(static_cast<std::size_t>(T));
    parallel_for(0, T, std::max<Index>(1, (Index(1) << 16) / std::max<Index>(n, 1)), [&](Index t) {
      s[t] = kernels::quantize_absmax_i8(x.row(t).data(), static_cast<std::size_t>(n), static_cast<std::size_t>(padded),
                                         q + t * padded, sum + t);
    });
    a.q = q;
    a.ld = static_cast<std::size_t>(padded);
    a.scale = s;
    a.sum = sum;
    a.tokens = T;
    a.cols = n;
    return a;
  }

  /// y = BitLinear(x). x: [T, in], y: [T, out] (must not overlap x). Scratch from ws.
  void forward(ConstMatrixRef<float> x /* [T, in] */, MatrixRef<float> y /* [T, out] */, Workspace<float>& ws) const {
    check_io(x.rows(), x.cols(), y);
    if (x.rows() == 0) return;
    typename Workspace<float>::Frame frame(ws);
    if (cfg_.rms_norm) {
      auto h = ws.matrix(x.rows(), x.cols());  // [T, in]
      norm_.forward(x, h);
      forward_quantized(quantize_input(h, padded_in_features(), ws), y, ws);
    } else {
      forward_quantized(quantize_input(x, padded_in_features(), ws), y, ws);
    }
  }

  /// Allocating convenience form.
  Matrix<float> forward(ConstMatrixRef<float> x /* [T, in] */) const {
    Workspace<float> ws;
    Matrix<float> y(x.rows(), out_features());
    forward(x, y, ws);
    return y;
  }

  /// The product from activations already quantized (shared by layers with the same input, e.g.
  /// q/k/v or gate/up; the layer's own rms_norm is NOT applied). xq.ld >= padded_in_features().
  void forward_quantized(const QuantizedActivations& xq, MatrixRef<float> y /* [T, out] */, Workspace<float>& ws) const {
    check(xq.cols == in_features() && xq.ld >= static_cast<std::size_t>(padded_in_features()),
          ErrorKind::shape_mismatch, where(), "quantized input has ", xq.cols, " columns (row stride ", xq.ld,
          "), expected ", in_features(), " (stride >= ", padded_in_features(), ")");
    check_shape(where(), "output y", y.rows(), y.cols(), xq.tokens, out_features());
    const Index T = xq.tokens, out = out_features();
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    std::int32_t* acc = ws.template raw<std::int32_t>(static_cast<std::size_t>(T * out));  // [T, out]
    const double work = double(T) * double(out) * double(padded_in_features());
    const Index threads = work >= kMinParallelWork ? std::min<Index>(num_threads(), (out + kRowAlign - 1) / kRowAlign) : 1;
    if (threads <= 1) {
      w_.multiply(xq.q, xq.ld, xq.sum, T, acc, static_cast<std::size_t>(out), 0, out);
    } else {
      const Index chunk = (out + threads * kRowAlign - 1) / (threads * kRowAlign) * kRowAlign;
      parallel_for(0, threads, 1, [&](Index c) {
        const Index r0 = c * chunk, r1 = std::min(out, r0 + chunk);
        if (r1 > r0) w_.multiply(xq.q, xq.ld, xq.sum, T, acc, static_cast<std::size_t>(out), r0, r1);
      });
    }
    const bool mul = conv_ == BitScale::multiply;
    const float* b = has_bias() ? bias_.data() : nullptr;
    for (Index t = 0; t < T; ++t)
      kernels::rescale(acc + t * out, static_cast<std::size_t>(out), xq.scale[t], scale_, mul, b, y.row(t).data());
  }

  /// Parameter count as a dense layer would have (weights + bias).
  Index parameters() const noexcept { return cfg_.in_features * cfg_.out_features + bias_.size(); }
  /// Bytes held: packed weights + their per-row digit sums + bias + scale (+ norm weight).
  std::size_t bytes() const noexcept {
    return w_.bytes() + sizeof(std::int32_t) * static_cast<std::size_t>(cfg_.out_features) +
           sizeof(float) *
               static_cast<std::size_t>(bias_.size() + 1 + (cfg_.rms_norm ? cfg_.in_features : 0));
  }

 private:
  static constexpr double kMinParallelWork = 1 << 21;  // int8 MACs below which one thread is faster
  static constexpr Index kRowAlign = 64;              // rows per thread: a multiple of the GEMM row chunk

  std::string where() const { return layer_where("BitLinear", name_); }

  void check_io(Index rows, Index cols, const MatrixRef<float>& y) const {
    check_shape(where(), "input x", rows, cols, -1, in_features());
    check_shape(where(), "output y", y.rows(), y.cols(), rows, out_features());
  }

  static void check_config(const Config& cfg, const std::string& name) {
    const std::string w = layer_where("BitLinear", name);
    check(cfg.in_features > 0 && cfg.out_features > 0, ErrorKind::config, w, "in_features = ", cfg.in_features,
          " and out_features = ", cfg.out_features, " must be >= 1");
    check(cfg.in_features <= TernaryMatrix::kMaxCols, ErrorKind::config, w, "in_features = ", cfg.in_features,
          " exceeds ", TernaryMatrix::kMaxCols, " (int32 accumulators)");
    check(cfg.rms_norm_eps >= 0, ErrorKind::config, w, "rms_norm_eps = ", cfg.rms_norm_eps, " must be >= 0");
  }

  Config cfg_;
  std::string name_;
  TernaryMatrix w_;  // [out, in]
  float scale_ = 1.0f;
  BitScale conv_ = BitScale::divide;
  Vector<float> bias_;  // [out] or empty
  RMSNorm<float> norm_;  // [in], only with cfg.rms_norm
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
