#pragma once
// Token embedding: row lookup in a table [num_embeddings, embedding_dim]
// (torch.nn.Embedding; transformers `model.embed_tokens.weight`).

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../io/safetensors.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class Embedding {
 public:
  struct Config {
    Index num_embeddings = 0;  ///< HF `vocab_size`
    Index embedding_dim = 0;   ///< HF `hidden_size`
  };

  Embedding() = default;

  explicit Embedding(const Config& cfg, std::string name = {}) : name_(std::move(name)) {
    check_config(cfg, name_);
    weight_.setZero(cfg.num_embeddings, cfg.embedding_dim);
  }

  /// weight: [num_embeddings, embedding_dim]
  explicit Embedding(Matrix<T> weight, std::string name = {}) : name_(std::move(name)), weight_(std::move(weight)) {
    check_config(Config{weight_.rows(), weight_.cols()}, name_);
  }

  static Embedding load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    return Embedding(st.matrix<T>(join_name(prefix, "weight"), cfg.num_embeddings, cfg.embedding_dim,
                                  layer_where("Embedding", prefix)),
                     prefix);
  }

  Index num_embeddings() const noexcept { return weight_.rows(); }
  Index embedding_dim() const noexcept { return weight_.cols(); }
  Matrix<T>& weight() noexcept { return weight_; }  // [num_embeddings, embedding_dim]
  const Matrix<T>& weight() const noexcept { return weight_; }

  /// y[i] = weight[ids[i]]. ids: [n] token ids, each checked to be in [0, num_embeddings) before
  /// anything is written; y: [n, embedding_dim].
  template <class Int>
  void forward(const Int* ids, Index n, MatrixRef<T> y) const {
    static_assert(std::is_integral<Int>::value, "token ids must be integers");
    check_shape(where(), "output y", y.rows(), y.cols(), n, embedding_dim());
    for (Index i = 0; i < n; ++i) {
      const auto id = static_cast<long long>(ids[i]);
      check(id >= 0 && id < static_cast<long long>(num_embeddings()), ErrorKind::invalid_argument, where(),
            "token id ", id, " at position ", i, " is outside [0, ", num_embeddings(), ")");
    }
    for (Index i = 0; i < n; ++i) y.row(i) = weight_.row(static_cast<Index>(ids[i]));
  }

  template <class Int>
  Matrix<T> forward(const std::vector<Int>& ids) const {
    Matrix<T> y(static_cast<Index>(ids.size()), embedding_dim());
    forward(ids.data(), static_cast<Index>(ids.size()), y);
    return y;
  }

 private:
  std::string where() const { return layer_where("Embedding", name_); }
  static void check_config(const Config& cfg, const std::string& name) {
    check(cfg.num_embeddings > 0 && cfg.embedding_dim > 0, ErrorKind::config, layer_where("Embedding", name),
          "num_embeddings = ", cfg.num_embeddings, " and embedding_dim = ", cfg.embedding_dim, " must be >= 1");
  }

  std::string name_;
  Matrix<T> weight_;  // [num_embeddings, embedding_dim]
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
