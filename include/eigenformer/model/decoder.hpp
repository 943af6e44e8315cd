#pragma once
// Decoder: a decoder-only language model composed from the library's layers. Each block is
//   h = h + mixer(input_layernorm(h))
//   h = h + mlp(post_attention_layernorm(h))
// with the token mixer chosen per block (MixerKind: softmax attention MHA/GQA/MQA with any position
// encoding, mask or sliding window; DeepSeek MLA; RetNet multi-scale retention; YOCO's gated
// retention), then logits = lm_head(norm(h)). Prefill and decode go through the same per-sequence
// DecoderState (one cache or recurrent state per block, each the kind its mixer needs).
//
// Checkpoint names (Hugging Face Llama layout; every mixer sits under `self_attn`):
//   model.embed_tokens.weight                                     [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight                       [hidden]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight              attention (HF Llama names)
//   model.layers.{i}.self_attn.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}, kv_a_proj_with_mqa,
//                              kv_a_layernorm, kv_b_proj, o_proj  MLA (HF DeepSeek-V3 names)
//   model.layers.{i}.self_attn.{q,k,v,g,out}_proj.weight          retention (torchscale names)
//   model.layers.{i}.self_attn.{q,k,v,g,gt,out}_proj.weight       gated retention (unilm YOCO names)
//   model.layers.{i}.post_attention_layernorm.weight              [hidden]
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight               GLU / MLP (MLP<float>::Config)
//   model.layers.{i}.mlp.layers.{0,1}.*                           KAN FFN (kan_ffn: efficient-kan names)
//   model.norm.weight, lm_head.weight (absent with tie_word_embeddings: the embedding is reused)
//
// The configuration can be read from JSON (decoder_config_from_json, model/decoder_config.hpp).

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../attention/mla.hpp"
#include "../attention/multi_head_attention.hpp"
#include "../cache/kv_cache.hpp"
#include "../cache/latent_cache.hpp"
#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../embedding/embedding.hpp"
#include "../ffn/mlp.hpp"
#include "../kan/kan_ffn.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../norm/rms_norm.hpp"
#include "../ops/activation.hpp"
#include "../ops/matmul.hpp"
#include "../retention/gated_retention.hpp"
#include "../retention/multiscale_retention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

enum class MixerKind { attention, mla, retention, gated_retention };

inline const char* to_string(MixerKind k) noexcept {
  switch (k) {
    case MixerKind::attention: return "attention";
    case MixerKind::mla: return "mla";
    case MixerKind::retention: return "retention";
    case MixerKind::gated_retention: return "gated_retention";
  }
  return "?";
}

/// One block. Only the configuration of `mixer` is used; its width (hidden_size / embed_dim) and the
/// MLP's hidden_size are set from DecoderConfig::hidden_size.
struct DecoderBlockConfig {
  MixerKind mixer = MixerKind::attention;
  AttentionConfig attention;
  MLAConfig mla;
  RetentionConfig retention;
  GatedRetentionConfig gated_retention;
  MLP<float>::Config mlp;  ///< intermediate_size, act, gated (names: Llama's gate/up/down_proj)
  /// The FFN is a KANFFN (hidden -> mlp.intermediate_size -> hidden, basis and grid from `kan`)
  /// instead of the MLP (a "Kansformer" block).
  bool kan_ffn = false;
  KANFFN<float>::Config kan;
};

struct DecoderConfig {
  Index vocab_size = 0;
  Index hidden_size = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::vector<DecoderBlockConfig> layers;
};

/// The per-sequence state of one block's mixer.
using MixerState = std::variant<KVCache<float>, LatentCache<float>, RetentionState<float>, GatedRetentionState<float>>;

/// A sequence's state: one MixerState per block and the tokens consumed so far.
struct DecoderState {
  std::vector<MixerState> blocks;
  std::int64_t position = 0;
  std::int64_t capacity = 0;  ///< tokens the attention caches hold (sliding windows: unbounded)

  /// Bytes held by the caches and states (grows with the capacity for attention and MLA only).
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& s : blocks) std::visit([&b](const auto& x) { b += x.bytes(); }, s);
    return b;
  }
};

class Decoder {
 public:
  using Mixer = std::variant<MultiHeadAttention, MultiHeadLatentAttention, MultiScaleRetention<float>,
                             GatedRetention<float>>;

  struct Block {
    RMSNorm<float> input_layernorm;
    Mixer mixer;
    RMSNorm<float> post_attention_layernorm;
    MLP<float> mlp;     ///< unused (empty) with kan_ffn
    KANFFN<float> kan;  ///< kan_ffn only
  };

  Decoder() = default;

  /// Zero weights (unit norms) of the configured shapes; see randomize() and load().
  explicit Decoder(const DecoderConfig& cfg) : cfg_(resolve(cfg)) {
    const Index D = cfg_.hidden_size;
    embed_ = Embedding<float>(Embedding<float>::Config{cfg_.vocab_size, D}, "model.embed_tokens");
    for (std::size_t i = 0; i < cfg_.layers.size(); ++i) {
      const std::string p = layer_prefix(i);
      const DecoderBlockConfig& b = cfg_.layers[i];
      Block blk{RMSNorm<float>(norm_config(), join_name(p, "input_layernorm")), make_mixer(b, join_name(p, "self_attn")),
                RMSNorm<float>(norm_config(), join_name(p, "post_attention_layernorm")), MLP<float>(), KANFFN<float>()};
      if (b.kan_ffn)
        blk.kan = KANFFN<float>(b.kan, join_name(p, "mlp"));
      else
        blk.mlp = MLP<float>(b.mlp, join_name(p, "mlp"));
      blocks_.push_back(std::move(blk));
    }
    norm_ = RMSNorm<float>(norm_config(), "model.norm");
    if (!cfg_.tie_word_embeddings) lm_head_ = Linear<float>({D, cfg_.vocab_size, false}, "lm_head");
  }

  /// Every weight from `st` under the names in the file comment.
  static Decoder load(const SafeTensors& st, const DecoderConfig& cfg) {
    Decoder d;
    d.cfg_ = resolve(cfg);
    const DecoderConfig& c = d.cfg_;
    const Index D = c.hidden_size;
    d.embed_ = Embedding<float>::load(st, "model.embed_tokens", {c.vocab_size, D});
    for (std::size_t i = 0; i < c.layers.size(); ++i) {
      const std::string p = layer_prefix(i);
      const DecoderBlockConfig& b = c.layers[i];
      const std::string a = join_name(p, "self_attn");
      Mixer m;
      switch (b.mixer) {
        case MixerKind::attention: m.emplace<0>(MultiHeadAttention::load(st, a, b.attention)); break;
        case MixerKind::mla: m.emplace<1>(MultiHeadLatentAttention::load(st, a, b.mla)); break;
        case MixerKind::retention: m.emplace<2>(MultiScaleRetention<float>::load(st, a, b.retention)); break;
        case MixerKind::gated_retention: m.emplace<3>(GatedRetention<float>::load(st, a, b.gated_retention)); break;
      }
      Block blk{RMSNorm<float>::load(st, join_name(p, "input_layernorm"), d.norm_config()), std::move(m),
                RMSNorm<float>::load(st, join_name(p, "post_attention_layernorm"), d.norm_config()), MLP<float>(),
                KANFFN<float>()};
      if (b.kan_ffn)
        blk.kan = KANFFN<float>::load(st, join_name(p, "mlp"), b.kan);
      else
        blk.mlp = MLP<float>::load(st, join_name(p, "mlp"), b.mlp);
      d.blocks_.push_back(std::move(blk));
    }
    d.norm_ = RMSNorm<float>::load(st, "model.norm", d.norm_config());
    if (!c.tie_word_embeddings) d.lm_head_ = Linear<float>::load(st, "lm_head", {D, c.vocab_size, false});
    return d;
  }

  const DecoderConfig& config() const noexcept { return cfg_; }
  Index num_layers() const noexcept { return static_cast<Index>(blocks_.size()); }
  Block& block(Index i) { return blocks_.at(static_cast<std::size_t>(i)); }
  const Block& block(Index i) const { return blocks_.at(static_cast<std::size_t>(i)); }
  Embedding<float>& embed_tokens() noexcept { return embed_; }
  Linear<float>& lm_head() noexcept { return lm_head_; }

  /// Weights (embedding, lm_head, every projection) drawn from N(0, 1 / fan_in) with a fixed seed
  /// (the embedding N(0, 1)); norms stay 1; B-spline KAN FFNs get efficient-kan's reset_parameters
  /// (the RBF and Chebyshev bases keep their constructor weights). For benchmarks and examples.
  void randomize(std::uint32_t seed) {
    std::mt19937 g(seed);
    auto fill = [&g](Matrix<float>& w, double sigma) {
      std::normal_distribution<float> n(0.0f, static_cast<float>(sigma));
      for (Index i = 0; i < w.size(); ++i) w.data()[i] = n(g);
    };
    auto lin = [&fill](Linear<float>& l) {
      if (l.weight().size() > 0) fill(l.weight(), 1.0 / std::sqrt(static_cast<double>(l.in_features())));
    };
    fill(embed_.weight(), 1.0);
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      Block& b = blocks_[i];
      std::visit(
          [&lin](auto& m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, MultiHeadAttention>) {
              for (Linear<float>* l : {&m.q_proj(), &m.k_proj(), &m.v_proj(), &m.o_proj()}) lin(*l);
            } else if constexpr (std::is_same_v<M, MultiHeadLatentAttention>) {
              for (Linear<float>* l :
                   {&m.q_proj(), &m.q_a_proj(), &m.q_b_proj(), &m.kv_a_proj_with_mqa(), &m.kv_b_proj(), &m.o_proj()})
                lin(*l);
            } else if constexpr (std::is_same_v<M, MultiScaleRetention<float>>) {
              for (Linear<float>* l : {&m.q_proj(), &m.k_proj(), &m.v_proj(), &m.g_proj(), &m.out_proj()}) lin(*l);
            } else {
              for (Linear<float>* l : {&m.q_proj(), &m.k_proj(), &m.v_proj(), &m.g_proj(), &m.gt_proj(), &m.out_proj()})
                lin(*l);
            }
          },
          b.mixer);
      if (cfg_.layers[i].kan_ffn) {
        std::mt19937 g32(static_cast<std::uint32_t>(g()));
        for (auto* l : {&b.kan.up(), &b.kan.down()})
          if (auto* k = std::get_if<KANLinear<float>>(l)) k->reset_parameters(g32);
        continue;
      }
      if (b.mlp.config().gated) lin(b.mlp.gate());
      lin(b.mlp.up());
      lin(b.mlp.down());
    }
    if (!cfg_.tie_word_embeddings) lin(lm_head_);
  }

  /// Writes every weight under the names load() reads (float32). Blocks with a KAN FFN are refused
  /// (ErrorKind::invalid_argument): their efficient-kan tensors are not written by this function.
  void save(SafeTensorsWriter& w) const {
    for (const DecoderBlockConfig& b : cfg_.layers)
      check(!b.kan_ffn, ErrorKind::invalid_argument, kWhere, "save() does not write KAN FFN blocks");
    auto lin = [&w](const std::string& n, const Linear<float>& l) {
      if (l.weight().size() == 0) return;
      w.add(n + ".weight", l.weight());
      if (l.has_bias()) w.add(n + ".bias", l.bias());
    };
    auto norm = [&w](const std::string& n, const RMSNorm<float>& r) { w.add(n + ".weight", r.scale()); };
    w.add("model.embed_tokens.weight", embed_.weight());
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      const std::string p = layer_prefix(i), a = p + ".self_attn.";
      norm(p + ".input_layernorm", b.input_layernorm);
      std::visit(
          [&](const auto& m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, MultiHeadAttention>) {
              lin(a + "q_proj", m.q_proj());
              lin(a + "k_proj", m.k_proj());
              lin(a + "v_proj", m.v_proj());
              lin(a + "o_proj", m.o_proj());
            } else if constexpr (std::is_same_v<M, MultiHeadLatentAttention>) {
              if (m.has_q_lora()) {
                lin(a + "q_a_proj", m.q_a_proj());
                norm(a + "q_a_layernorm", m.q_a_layernorm());
                lin(a + "q_b_proj", m.q_b_proj());
              } else {
                lin(a + "q_proj", m.q_proj());
              }
              lin(a + "kv_a_proj_with_mqa", m.kv_a_proj_with_mqa());
              norm(a + "kv_a_layernorm", m.kv_a_layernorm());
              lin(a + "kv_b_proj", m.kv_b_proj());
              lin(a + "o_proj", m.o_proj());
            } else if constexpr (std::is_same_v<M, MultiScaleRetention<float>>) {
              for (auto [n, l] : {std::pair{"q_proj", &m.q_proj()}, {"k_proj", &m.k_proj()}, {"v_proj", &m.v_proj()},
                                  {"g_proj", &m.g_proj()}, {"out_proj", &m.out_proj()}})
                lin(a + n, *l);
            } else {
              for (auto [n, l] : {std::pair{"q_proj", &m.q_proj()}, {"k_proj", &m.k_proj()}, {"v_proj", &m.v_proj()},
                                  {"g_proj", &m.g_proj()}, {"gt_proj", &m.gt_proj()}, {"out_proj", &m.out_proj()}})
                lin(a + n, *l);
            }
          },
          b.mixer);
      norm(p + ".post_attention_layernorm", b.post_attention_layernorm);
      if (b.mlp.config().gated) lin(p + ".mlp.gate_proj", b.mlp.gate());
      lin(p + ".mlp.up_proj", b.mlp.up());
      lin(p + ".mlp.down_proj", b.mlp.down());
    }
    norm("model.norm", norm_);
    if (!cfg_.tie_word_embeddings) lin("lm_head", lm_head_);
  }

  /// An empty state for a sequence of up to `capacity` tokens: a KVCache per attention block (a ring of
  /// the window with sliding-window attention), a LatentCache per MLA block, O(1) states for retention.
  DecoderState make_state(std::int64_t capacity) const {
    check(capacity >= 1, ErrorKind::invalid_argument, kWhere, "state capacity = ", capacity, " must be >= 1");
    DecoderState s;
    s.capacity = capacity;
    for (const Block& b : blocks_) {
      std::visit(
          [&](const auto& m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, MultiHeadAttention>) {
              const AttentionConfig& a = m.config();
              typename KVCache<float>::Config kc{a.num_key_value_heads, a.head_dim, a.head_dim,
                                                 static_cast<Index>(capacity), CacheEviction::none, 0};
              if (a.sliding_window > 0 && a.sliding_window < capacity) {
                kc.capacity = a.sliding_window;
                kc.eviction = CacheEviction::sliding_window;
              }
              s.blocks.emplace_back(std::in_place_index<0>, kc);
            } else if constexpr (std::is_same_v<M, MultiHeadLatentAttention>) {
              s.blocks.emplace_back(std::in_place_index<1>, m.latent_cache_config(static_cast<Index>(capacity)));
            } else if constexpr (std::is_same_v<M, MultiScaleRetention<float>>) {
              s.blocks.emplace_back(std::in_place_index<2>, m.make_state());
            } else {
              s.blocks.emplace_back(std::in_place_index<3>, m.make_state());
            }
          },
          b.mixer);
    }
    return s;
  }

  /// Runs the next n tokens `ids` of the sequence in `state` (a prompt, n > 1, or a decode step, n = 1).
  /// logits: [n, vocab] (every token's) or [1, vocab] (only the last token's: the usual prefill).
  template <class Int>
  void forward(const Int* ids, Index n, MatrixRef<float> logits, DecoderState& state, Workspace<float>& ws) const {
    const Index D = cfg_.hidden_size, V = cfg_.vocab_size;
    check(n >= 1, ErrorKind::invalid_argument, kWhere, "n = ", n, " tokens, expected >= 1");
    check(logits.cols() == V && (logits.rows() == n || logits.rows() == 1), ErrorKind::shape_mismatch, kWhere,
          "logits have shape [", logits.rows(), ", ", logits.cols(), "], expected [", n, ", ", V, "] or [1, ", V,
          "]");
    check(state.blocks.size() == blocks_.size(), ErrorKind::shape_mismatch, kWhere, "state has ",
          state.blocks.size(), " blocks, the model ", blocks_.size(), " (use make_state())");
    check(state.position + n <= state.capacity, ErrorKind::capacity, kWhere, "state holds ", state.capacity,
          " tokens; ", state.position, " used, ", n, " more do not fit");
    typename Workspace<float>::Frame frame(ws);
    auto h = ws.matrix(n, D), a = ws.matrix(n, D), f = ws.matrix(n, D);
    embed_.forward(ids, n, h);
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      b.input_layernorm.forward(h, a);
      mix(b.mixer, a, f, state.blocks[i], ws);
      ops::add<float>(h, f, h);
      b.post_attention_layernorm.forward(h, a);
      if (cfg_.layers[i].kan_ffn)
        b.kan.forward(a, f, ws);
      else
        b.mlp.forward(a, f, ws);
      ops::add<float>(h, f, h);
    }
    auto last = h.bottomRows(logits.rows());
    auto z = a.topRows(logits.rows());
    norm_.forward(last, z);
    if (cfg_.tie_word_embeddings)
      matmul<float>(z, embed_.weight(), logits, MatmulOp::nt);
    else
      lm_head_.forward(z, logits);
    state.position += n;
  }

  Index parameters() const {
    Index p = embed_.weight().size() + norm_.config().hidden_size + lm_head_.parameters();
    for (const Block& b : blocks_) {
      p += 2 * cfg_.hidden_size + b.mlp.parameters() + b.kan.parameters();
      std::visit([&p](const auto& m) { p += m.parameters(); }, b.mixer);
    }
    return p;
  }

 private:
  static constexpr const char* kWhere = "Decoder";

  static std::string layer_prefix(std::size_t i) { return "model.layers." + std::to_string(i); }
  RMSNorm<float>::Config norm_config() const { return {cfg_.hidden_size, cfg_.rms_norm_eps, false}; }

  static DecoderConfig resolve(DecoderConfig c) {
    check(c.vocab_size >= 1 && c.hidden_size >= 1, ErrorKind::config, kWhere, "vocab_size = ", c.vocab_size,
          " and hidden_size = ", c.hidden_size, " must be >= 1");
    check(c.rms_norm_eps >= 0 && std::isfinite(c.rms_norm_eps), ErrorKind::config, kWhere,
          "rms_norm_eps = ", c.rms_norm_eps, " must be finite and >= 0");
    for (auto& b : c.layers) {
      b.attention.hidden_size = c.hidden_size;
      b.mla.hidden_size = c.hidden_size;
      b.retention.embed_dim = c.hidden_size;
      b.gated_retention.embed_dim = c.hidden_size;
      b.mlp.hidden_size = c.hidden_size;
      b.mlp.names = MLP<float>::Names::llama();
      b.kan.hidden_size = c.hidden_size;
      b.kan.intermediate_size = b.mlp.intermediate_size;
    }
    return c;
  }

  static Mixer make_mixer(const DecoderBlockConfig& b, const std::string& name) {
    switch (b.mixer) {
      case MixerKind::attention: return Mixer(std::in_place_index<0>, b.attention, name);
      case MixerKind::mla: return Mixer(std::in_place_index<1>, b.mla, name);
      case MixerKind::retention: return Mixer(std::in_place_index<2>, b.retention, name);
      case MixerKind::gated_retention: return Mixer(std::in_place_index<3>, b.gated_retention, name);
    }
    fail(ErrorKind::config, kWhere, "unknown mixer kind");
  }

  // One block's token mixer over the rows of x, continuing its state.
  static void mix(const Mixer& mixer, MatrixRef<float> x, MatrixRef<float> y, MixerState& st, Workspace<float>& ws) {
    check(mixer.index() == st.index(), ErrorKind::shape_mismatch, kWhere, "a block's state is a ",
          state_name(st.index()), ", its mixer needs a ", state_name(mixer.index()), " (use make_state())");
    switch (mixer.index()) {
      case 0: std::get<0>(mixer).forward(x, y, std::get<0>(st), ws); break;
      case 1: std::get<1>(mixer).forward(x, y, std::get<1>(st), ws); break;
      case 2: std::get<2>(mixer).forward(x, y, std::get<2>(st), ws); break;  // chunkwise or recurrent
      default: std::get<3>(mixer).forward(x, y, std::get<3>(st), ws); break;
    }
  }
  static const char* state_name(std::size_t i) {
    static const char* const names[] = {"KVCache", "LatentCache", "RetentionState", "GatedRetentionState"};
    return i < 4 ? names[i] : "?";
  }

  DecoderConfig cfg_;
  Embedding<float> embed_;
  std::vector<Block> blocks_;
  RMSNorm<float> norm_;
  Linear<float> lm_head_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
