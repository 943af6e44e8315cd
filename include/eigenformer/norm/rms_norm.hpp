#pragma once
// RMSNorm layer: y = x / sqrt(mean(x^2) + eps) * w  (Zhang & Sennrich 2019, arXiv:1910.07467;
// transformers LlamaRMSNorm: checkpoint name `<prefix>.weight`, eps = config `rms_norm_eps`).
// With unit_offset the multiplier is (1 + w), as transformers GemmaRMSNorm stores it.

#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../io/safetensors.hpp"
#include "../ops/norm.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class RMSNorm {
 public:
  struct Config {
    Index hidden_size = 0;
    double eps = 1e-6;         ///< HF `rms_norm_eps`
    bool unit_offset = false;  ///< Gemma: multiply by (1 + weight)
  };

  RMSNorm() = default;

  /// Unit multiplier (weight 1, or 0 with unit_offset, i.e. the identity scale either way).
  explicit RMSNorm(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    scale_.setOnes(cfg_.hidden_size);
  }

  /// From the checkpoint weight [hidden] (as stored: without the Gemma offset applied).
  RMSNorm(const Config& cfg, Vector<T> weight, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    check(weight.size() == cfg_.hidden_size, ErrorKind::shape_mismatch, where(), "weight has ", weight.size(),
          " entries, expected ", cfg_.hidden_size);
    scale_ = std::move(weight);
    if (cfg_.unit_offset) scale_.array() += T(1);
  }

  static RMSNorm load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    return RMSNorm(cfg, st.vector<T>(join_name(prefix, "weight"), cfg.hidden_size, layer_where("RMSNorm", prefix)),
                   prefix);
  }

  const Config& config() const noexcept { return cfg_; }
  /// The multiplier applied after normalizing: the weight, or 1 + weight with unit_offset. [hidden]
  const Vector<T>& scale() const noexcept { return scale_; }

  /// x: [T, hidden] -> y: [T, hidden]; y may be x.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
    ops::rms_norm<T>(x, scale_, y, static_cast<T>(cfg_.eps));
  }
  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Matrix<T> y(x.rows(), cfg_.hidden_size);
    forward(x, y);
    return y;
  }

 private:
  std::string where() const { return layer_where("RMSNorm", name_); }
  static void check_config(const Config& cfg, const std::string& name) {
    check(cfg.hidden_size > 0, ErrorKind::config, layer_where("RMSNorm", name), "hidden_size = ", cfg.hidden_size,
          " must be >= 1");
    check(cfg.eps >= 0, ErrorKind::config, layer_where("RMSNorm", name), "eps = ", cfg.eps, " must be >= 0");
  }

  Config cfg_;
  std::string name_;
  Vector<T> scale_;  // [hidden]
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
