// zoo: the main example. Builds same-width small decoders that differ only in their token mixer (or
// FFN), with random weights, and measures for each: prefill tokens/s, decode time per token at several
// history lengths, cache/state bytes, weight bytes and peak resident memory. Prints a table (with a
// progress bar while it runs) and writes it as CSV and as an SVG chart (decode latency and memory vs
// history): the survey's "impossible triangle" made measurable on a CPU. Training parallelism is the
// prefill column (every variant prefills a whole prompt at once: attention in parallel, retention
// chunkwise); inference cost is the decode and memory columns; quality needs trained weights and is
// not measured here.
//
// The history before a decode measurement is synthesized (random K/V rows in the caches, recurrent
// states set to that position) instead of prefilled, so a 32K history costs seconds, not minutes: the
// decode cost of every mixer depends only on the cache/state sizes, which are the real ones.
//
//   zoo [--hidden 256] [--layers 4] [--heads 8] [--vocab 2048] [--ffn 512] [--prefill 512]
//       [--histories 1024,8192,32768] [--steps 16] [--threads 1]
//       [--variants mha,gqa,mqa,swa,longnet,mla,retnet,gated,kan,yoco,bitnet] [--csv zoo.csv] [--svg zoo.svg]
//
// Each variant runs in a child process (fork) so that its peak resident memory is its own.
#include <eigenformer/core/threading.hpp>
#include <eigenformer/ffn/bitnet_block.hpp>
#include <eigenformer/model/decoder.hpp>
#include <eigenformer/model/generate.hpp>
#include <eigenformer/retention/yoco.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace eigenformer;

namespace {

struct Sizes {
  Index hidden = 256, layers = 4, heads = 8, vocab = 2048, ffn = 512, prefill = 512, steps = 16;
  int threads = 1;
  std::vector<Index> histories = {1024, 8192, 32768};
};

constexpr int kMaxHist = 8;
struct Result {  // sent from the child through a pipe: plain data only
  double prefill_tok_s = 0;
  double decode_ms[kMaxHist] = {};
  double cache_bytes[kMaxHist] = {};
  double weight_bytes = 0;
  double cache_bytes_per_token_layer = 0;  // at the longest history: cache / (capacity x layers)
  double block_bits_per_weight = 0;        // BitNet: bits per weight of the ternary blocks
  double peak_rss_bytes = 0;
  char error[200] = {};
};

// Uniform values in [-a, a) from a fixed xorshift stream (fast: it fills caches of many MiB).
void fill(float* p, std::size_t n, std::uint64_t seed, float a = 0.5f) {
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    p[i] = a * (static_cast<float>(s >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
}
void fill(Matrix<float>& m, std::uint64_t seed, float a = 0.5f) { fill(m.data(), std::size_t(m.size()), seed, a); }

// What the harness needs of a model.
class ZooModel {
 public:
  virtual ~ZooModel() = default;
  virtual void reset(Index capacity) = 0;              // a fresh sequence state
  virtual void prefill(const std::vector<std::int32_t>& ids) = 0;
  virtual void fill_history(Index tokens) = 0;         // synthesize `tokens` of history in the state
  virtual void decode(std::int32_t token) = 0;         // one step
  virtual std::size_t state_bytes() const = 0;
  virtual std::size_t weight_bytes() const = 0;
  virtual double block_bits_per_weight() const { return 0; }
};

// Decoder-based variants (attention, MLA, retention, gated retention mixers).
class DecoderModel : public ZooModel {
 public:
  explicit DecoderModel(const DecoderConfig& c) : d_(c), logits_(1, c.vocab_size) { d_.randomize(1); }
  void reset(Index capacity) override { st_ = d_.make_state(capacity); }
  void prefill(const std::vector<std::int32_t>& ids) override {
    d_.forward(ids.data(), static_cast<Index>(ids.size()), logits_, st_, ws_);
  }
  void fill_history(Index n) override {
    for (std::size_t i = 0; i < st_.blocks.size(); ++i) {
      std::visit(
          [&](auto& s) {
            using S = std::decay_t<decltype(s)>;
            if constexpr (std::is_same_v<S, KVCache<float>>) {
              const auto& c = s.config();
              Matrix<float> k(std::min<Index>(n, 1024), c.n_kv_heads * c.head_dim), v(k.rows(), c.n_kv_heads * c.v_head_dim);
              for (Index t = 0; t < n; t += k.rows()) {
                const Index m = std::min(k.rows(), n - t);
                fill(k, 2 * std::uint64_t(t) + i);
                fill(v, 2 * std::uint64_t(t) + i + 1);
                s.append(k.topRows(m), v.topRows(m));
              }
            } else if constexpr (std::is_same_v<S, LatentCache<float>>) {
              const auto& c = s.config();
              Matrix<float> r(std::min<Index>(n, 1024), c.kv_lora_rank + c.qk_rope_head_dim);
              for (Index t = 0; t < n; t += r.rows()) {
                fill(r, std::uint64_t(t) + i);
                s.append(r.topRows(std::min(r.rows(), n - t)));
              }
            } else {
              fill(s.kv, i, 0.05f);
              s.position = n;
              if constexpr (std::is_same_v<S, RetentionState<float>>) s.scale.setConstant(30.0f);
            }
          },
          st_.blocks[i]);
    }
    st_.position = n;
  }
  void decode(std::int32_t token) override { d_.forward(&token, 1, logits_, st_, ws_); }
  std::size_t state_bytes() const override { return st_.bytes(); }
  std::size_t weight_bytes() const override { return std::size_t(d_.parameters()) * sizeof(float); }

 private:
  Decoder d_;
  DecoderState st_;
  Workspace<float> ws_;
  Matrix<float> logits_;
};

// YOCO: embedding + YOCO (gated-retention self-decoder, one shared K/V) + lm_head.
class YOCOModel : public ZooModel {
 public:
  explicit YOCOModel(const Sizes& z) : embed_(Embedding<float>::Config{z.vocab, z.hidden}), lm_head_({z.hidden, z.vocab, false}) {
    YOCOConfig c;
    c.dim = z.hidden;
    c.hidden_dim = z.ffn;
    c.n_self_layers = z.layers / 2;
    c.n_cross_layers = z.layers - z.layers / 2;
    c.n_self_heads = z.heads;
    c.n_attn_heads = z.heads;
    c.n_attn_kv_heads = std::max<Index>(1, z.heads / 4);
    m_ = YOCO(c);
    std::uint64_t seed = 10;
    auto lin = [&seed](Linear<float>& l) { fill(l.weight(), ++seed, 1.7f / std::sqrt(float(l.in_features()))); };
    for (Index i = 0; i < c.n_self_layers; ++i) {
      auto& l = m_.self_layer(i);
      for (Linear<float>* p : {&l.mixer.q_proj(), &l.mixer.k_proj(), &l.mixer.v_proj(), &l.mixer.g_proj(),
                               &l.mixer.gt_proj(), &l.mixer.out_proj(), &l.ffn.gate(), &l.ffn.up(), &l.ffn.down()})
        lin(*p);
    }
    for (Index i = 0; i < c.n_cross_layers; ++i) {
      auto& l = m_.cross_layer(i);
      for (Linear<float>* p : {&l.q_proj, &l.out_proj, &l.ffn.gate(), &l.ffn.up(), &l.ffn.down()}) lin(*p);
    }
    lin(m_.k_proj());
    lin(m_.v_proj());
    fill(embed_.weight(), 3, 1.7f);
    lin(lm_head_);
  }
  void reset(Index capacity) override { cache_ = m_.make_cache(capacity); }
  void prefill(const std::vector<std::int32_t>& ids) override { run(ids.data(), static_cast<Index>(ids.size())); }
  void fill_history(Index n) override {
    fill(cache_.key.data(), std::size_t(n * cache_.key.cols()), 5);
    fill(cache_.value.data(), std::size_t(n * cache_.value.cols()), 6);
    for (auto& s : cache_.self_states) {
      fill(s.kv, 7, 0.05f);
      s.position = n;
    }
    cache_.position = n;
  }
  void decode(std::int32_t token) override { run(&token, 1); }
  std::size_t state_bytes() const override { return cache_.bytes(); }
  std::size_t weight_bytes() const override {
    return std::size_t(m_.parameters() + embed_.weight().size() + lm_head_.parameters()) * sizeof(float);
  }

 private:
  void run(const std::int32_t* ids, Index n) {
    Matrix<float> x(n, m_.config().dim), y(1, m_.config().dim), logits(1, lm_head_.out_features());
    embed_.forward(ids, n, x);
    m_.forward(x, y, cache_, ws_);
    lm_head_.forward(y, logits);
  }
  Embedding<float> embed_;
  YOCO m_;
  Linear<float> lm_head_;
  YOCOCache cache_;
  Workspace<float> ws_;
};

// BitNet b1.58: BitNetDecoderLayer stack (ternary projections, int8 activations) loaded from random
// float weights (quantized on load), embedding, final norm, float lm_head.
class BitNetModel : public ZooModel {
 public:
  explicit BitNetModel(const Sizes& z) : embed_(Embedding<float>::Config{z.vocab, z.hidden}), lm_head_({z.hidden, z.vocab, false}) {
    cfg_.hidden_size = z.hidden;
    cfg_.intermediate_size = z.ffn;
    cfg_.num_attention_heads = z.heads;
    cfg_.num_key_value_heads = std::max<Index>(1, z.heads / 4);
    const Index hd = z.hidden / z.heads, kv = cfg_.num_key_value_heads * hd;
    SafeTensorsWriter w;
    std::uint64_t seed = 20;
    auto mat = [&](const std::string& n, Index out, Index in) {
      Matrix<float> m(out, in);
      fill(m, ++seed, 1.7f / std::sqrt(float(in)));
      w.add(n, m);
    };
    auto ones = [&](const std::string& n, Index k) { w.add(n, Vector<float>(Vector<float>::Ones(k))); };
    for (Index i = 0; i < z.layers; ++i) {
      const std::string p = "l" + std::to_string(i) + ".";
      ones(p + "input_layernorm.weight", z.hidden);
      ones(p + "post_attention_layernorm.weight", z.hidden);
      mat(p + "self_attn.q_proj.weight", z.hidden, z.hidden);
      mat(p + "self_attn.k_proj.weight", kv, z.hidden);
      mat(p + "self_attn.v_proj.weight", kv, z.hidden);
      mat(p + "self_attn.o_proj.weight", z.hidden, z.hidden);
      ones(p + "self_attn.attn_sub_norm.weight", z.hidden);
      mat(p + "mlp.gate_proj.weight", z.ffn, z.hidden);
      mat(p + "mlp.up_proj.weight", z.ffn, z.hidden);
      mat(p + "mlp.down_proj.weight", z.hidden, z.ffn);
      ones(p + "mlp.ffn_sub_norm.weight", z.ffn);
    }
    const SafeTensors st = SafeTensors::from_bytes(w.to_bytes());
    for (Index i = 0; i < z.layers; ++i) layers_.push_back(BitNetDecoderLayer::load(st, "l" + std::to_string(i), cfg_));
    norm_ = RMSNorm<float>(RMSNorm<float>::Config{z.hidden, 1e-5, false});
    fill(embed_.weight(), 3, 1.7f);
    fill(lm_head_.weight(), 4, 1.7f / std::sqrt(float(z.hidden)));
  }
  void reset(Index capacity) override {
    caches_.clear();
    const Index hd = cfg_.hidden_size / cfg_.num_attention_heads;
    for (std::size_t i = 0; i < layers_.size(); ++i)
      caches_.emplace_back(KVCache<float>::Config{cfg_.num_key_value_heads, hd, hd, capacity, CacheEviction::none, 0});
  }
  void prefill(const std::vector<std::int32_t>& ids) override { run(ids.data(), static_cast<Index>(ids.size())); }
  void fill_history(Index n) override {
    for (std::size_t i = 0; i < caches_.size(); ++i) {
      const Index w = cfg_.num_key_value_heads * (cfg_.hidden_size / cfg_.num_attention_heads);
      Matrix<float> k(std::min<Index>(n, 1024), w), v(k.rows(), w);
      for (Index t = 0; t < n; t += k.rows()) {
        fill(k, 2 * std::uint64_t(t) + i);
        fill(v, 2 * std::uint64_t(t) + i + 1);
        caches_[i].append(k.topRows(std::min(k.rows(), n - t)), v.topRows(std::min(k.rows(), n - t)));
      }
    }
  }
  void decode(std::int32_t token) override { run(&token, 1); }
  std::size_t state_bytes() const override {
    std::size_t b = 0;
    for (const auto& c : caches_) b += c.bytes();
    return b;
  }
  std::size_t weight_bytes() const override {
    std::size_t b = std::size_t(embed_.weight().size() + lm_head_.parameters()) * sizeof(float);
    for (const auto& l : layers_) b += l.bytes();
    return b;
  }
  // Bytes of the ternary blocks (packed weights, scales, norms) per weight of their projections.
  double block_bits_per_weight() const override {
    const double D = double(cfg_.hidden_size), F = double(cfg_.intermediate_size);
    const double kv = double(cfg_.num_key_value_heads * (cfg_.hidden_size / cfg_.num_attention_heads));
    double bytes = 0;
    for (const auto& l : layers_) bytes += double(l.bytes());
    return 8.0 * bytes / (double(layers_.size()) * (2 * D * D + 2 * kv * D + 3 * D * F));
  }

 private:
  void run(const std::int32_t* ids, Index n) {
    const Index D = cfg_.hidden_size;
    Matrix<float> h(n, D), t(n, D), logits(1, lm_head_.out_features());
    embed_.forward(ids, n, h);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      layers_[i].forward(h, t, caches_[i], ws_);
      h.swap(t);
    }
    Matrix<float> last = norm_.forward(h.bottomRows(1));
    lm_head_.forward(last, logits);
  }
  BitNetConfig cfg_;
  Embedding<float> embed_;
  std::vector<BitNetDecoderLayer> layers_;
  std::vector<KVCache<float>> caches_;
  RMSNorm<float> norm_;
  Linear<float> lm_head_;
  Workspace<float> ws_;
};

struct Variant {
  std::string name, what;
  std::function<std::unique_ptr<ZooModel>(const Sizes&)> make;
};

DecoderConfig base_config(const Sizes& z) {
  DecoderConfig c;
  c.vocab_size = z.vocab;
  c.hidden_size = z.hidden;
  return c;
}

std::unique_ptr<ZooModel> decoder_of(const Sizes& z, const std::function<void(DecoderBlockConfig&)>& edit) {
  DecoderConfig c = base_config(z);
  for (Index i = 0; i < z.layers; ++i) {
    DecoderBlockConfig b;
    b.mlp.intermediate_size = z.ffn;
    edit(b);
    c.layers.push_back(b);
  }
  return std::make_unique<DecoderModel>(c);
}

std::vector<Variant> all_variants() {
  auto attention = [](Index kv_div, Index window) {
    return [kv_div, window](const Sizes& z) {
      return decoder_of(z, [&](DecoderBlockConfig& b) {
        b.mixer = MixerKind::attention;
        b.attention.num_attention_heads = z.heads;
        b.attention.num_key_value_heads = kv_div == 0 ? 1 : std::max<Index>(1, z.heads / kv_div);
        b.attention.sliding_window = window;
      });
    };
  };
  return {
      {"mha", "multi-head attention", attention(1, 0)},
      {"gqa", "grouped-query attention (heads / 4 K/V heads)", attention(4, 0)},
      {"mqa", "multi-query attention (1 K/V head)", attention(0, 0)},
      {"swa", "sliding-window attention (window 1024, GQA)", attention(4, 1024)},
      {"longnet", "LongNet dilated attention (2048,1),(4096,2),(8192,4), GQA",
       [](const Sizes& z) {
         return decoder_of(z, [&](DecoderBlockConfig& b) {
           b.mixer = MixerKind::attention;
           b.attention.num_attention_heads = z.heads;
           b.attention.num_key_value_heads = std::max<Index>(1, z.heads / 4);
           b.attention.dilated = {{2048, 1}, {4096, 2}, {8192, 4}};
         });
       }},
      {"mla", "DeepSeek latent attention (kv_lora_rank hidden/2, rope 16)",
       [](const Sizes& z) {
         return decoder_of(z, [&](DecoderBlockConfig& b) {
           b.mixer = MixerKind::mla;
           b.mla.num_attention_heads = z.heads;
           b.mla.kv_lora_rank = z.hidden / 2;
           b.mla.qk_nope_head_dim = z.hidden / z.heads;
           b.mla.qk_rope_head_dim = 16;
           b.mla.v_head_dim = z.hidden / z.heads;
         });
       }},
      {"retnet", "RetNet multi-scale retention (value 2x)",
       [](const Sizes& z) {
         return decoder_of(z, [&](DecoderBlockConfig& b) {
           b.mixer = MixerKind::retention;
           b.retention.num_heads = std::max<Index>(1, z.heads / 2);
           b.retention.value_dim = 2 * z.hidden;
         });
       }},
      {"gated", "YOCO gated retention in every layer",
       [](const Sizes& z) {
         return decoder_of(z, [&](DecoderBlockConfig& b) {
           b.mixer = MixerKind::gated_retention;
           b.gated_retention.num_heads = std::max<Index>(1, z.heads / 2);
         });
       }},
      {"kan", "GQA attention + B-spline KAN FFN (G 5, k 3, inner ffn/4)",
       [](const Sizes& z) {
         return decoder_of(z, [&](DecoderBlockConfig& b) {
           b.mixer = MixerKind::attention;
           b.attention.num_attention_heads = z.heads;
           b.attention.num_key_value_heads = std::max<Index>(1, z.heads / 4);
           b.kan_ffn = true;
           b.mlp.intermediate_size = std::max<Index>(1, z.ffn / 4);
         });
       }},
      {"yoco", "YOCO: gated-retention self-decoder + cross-decoder on one K/V",
       [](const Sizes& z) { return std::unique_ptr<ZooModel>(std::make_unique<YOCOModel>(z)); }},
      {"bitnet", "BitNet b1.58: ternary GQA attention + ReLU2 GLU",
       [](const Sizes& z) { return std::unique_ptr<ZooModel>(std::make_unique<BitNetModel>(z)); }},
  };
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs one variant (in the child process).
Result measure(const Variant& v, const Sizes& z) {
  Result r;
  try {
    set_num_threads(z.threads);
    auto m = v.make(z);
    r.weight_bytes = double(m->weight_bytes());
    std::vector<std::int32_t> ids(static_cast<std::size_t>(z.prefill));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>((i * 7919) % std::size_t(z.vocab));
    m->reset(z.prefill);
    m->prefill(ids);  // warm-up
    m->reset(z.prefill);
    const auto t0 = std::chrono::steady_clock::now();
    m->prefill(ids);
    r.prefill_tok_s = double(z.prefill) / seconds_since(t0);
    for (std::size_t h = 0; h < z.histories.size() && h < kMaxHist; ++h) {
      const Index hist = z.histories[h];
      m->reset(hist + z.steps + 1);
      m->fill_history(hist);
      m->decode(1);  // warm-up step
      const auto t1 = std::chrono::steady_clock::now();
      for (Index s = 0; s < z.steps; ++s) m->decode(static_cast<std::int32_t>(s % z.vocab));
      r.decode_ms[h] = 1e3 * seconds_since(t1) / double(z.steps);
      r.cache_bytes[h] = double(m->state_bytes());
      r.cache_bytes_per_token_layer = r.cache_bytes[h] / (double(hist + z.steps + 1) * double(z.layers));
    }
    r.block_bits_per_weight = m->block_bits_per_weight();
  } catch (const std::exception& e) {
    std::snprintf(r.error, sizeof(r.error), "%s", e.what());
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_bytes = double(ru.ru_maxrss) * 1024.0;
  return r;
}

Result run_isolated(const Variant& v, const Sizes& z) {
  int fd[2];
  if (pipe(fd) != 0) return measure(v, z);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return measure(v, z);
  }
  if (pid == 0) {
    close(fd[0]);
    const Result r = measure(v, z);
    const char* p = reinterpret_cast<const char*>(&r);
    std::size_t left = sizeof(r);
    while (left > 0) {
      const ssize_t k = write(fd[1], p, left);
      if (k <= 0) break;
      p += k;
      left -= std::size_t(k);
    }
    close(fd[1]);
    _exit(0);
  }
  close(fd[1]);
  Result r;
  char* p = reinterpret_cast<char*>(&r);
  std::size_t got = 0;
  while (got < sizeof(r)) {
    const ssize_t k = read(fd[0], p + got, sizeof(r) - got);
    if (k <= 0) break;
    got += std::size_t(k);
  }
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != sizeof(r)) std::snprintf(r.error, sizeof(r.error), "the measuring process died (status %d)", status);
  return r;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

std::string human_tokens(Index n) { return n % 1024 == 0 ? std::to_string(n / 1024) + "K" : std::to_string(n); }

// Two line charts side by side: decode ms/token and cache MiB against history (log-log axes).
void write_svg(const std::string& path, const std::vector<Variant>& vs, const std::vector<Result>& rs, const Sizes& z) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "zoo: cannot write %s\n", path.c_str());
    return;
  }
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                          "#bcbd22", "#17becf", "#000000"};
  const double W = 460, H = 320, L = 70, T = 40, PW = 360, PH = 220;
  std::fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
                  "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", 2 * W + 160, H + 20);
  const std::size_t nh = std::min<std::size_t>(z.histories.size(), kMaxHist);
  for (int panel = 0; panel < 2; ++panel) {
    const double x0 = L + panel * W;
    double lo = 1e300, hi = -1e300;
    for (std::size_t i = 0; i < rs.size(); ++i)
      for (std::size_t h = 0; h < nh; ++h) {
        const double v = panel == 0 ? rs[i].decode_ms[h] : rs[i].cache_bytes[h] / 1048576.0;
        if (v > 0 && !rs[i].error[0]) lo = std::min(lo, v), hi = std::max(hi, v);
      }
    if (!(lo < hi)) lo = 0.5 * hi, hi = 2 * hi + 1e-9;
    const double llo = std::floor(std::log10(lo)), lhi = std::ceil(std::log10(hi));
    const double hx0 = std::log2(double(z.histories.front())), hx1 = std::log2(double(z.histories[nh - 1]));
    auto X = [&](Index h) { return x0 + (hx1 > hx0 ? (std::log2(double(h)) - hx0) / (hx1 - hx0) : 0.5) * PW; };
    auto Y = [&](double v) { return T + PH - (std::log10(v) - llo) / std::max(1.0, lhi - llo) * PH; };
    std::fprintf(f, "<text x=\"%g\" y=\"20\" font-size=\"13\">%s</text>\n", x0,
                 panel == 0 ? "decode time per token (ms) vs history" : "cache / state memory (MiB) vs history");
    std::fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#888\"/>\n", x0, T, PW, PH);
    for (double e = llo; e <= lhi; e += 1)
      std::fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%g</text>\n", x0 - 4, Y(std::pow(10.0, e)) + 4,
                   std::pow(10.0, e));
    for (std::size_t h = 0; h < nh; ++h)
      std::fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", X(z.histories[h]), T + PH + 14,
                   human_tokens(z.histories[h]).c_str());
    for (std::size_t i = 0; i < rs.size(); ++i) {
      if (rs[i].error[0]) continue;
      std::fprintf(f, "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"%s\" points=\"", colors[i % 11]);
      for (std::size_t h = 0; h < nh; ++h) {
        const double v = panel == 0 ? rs[i].decode_ms[h] : rs[i].cache_bytes[h] / 1048576.0;
        std::fprintf(f, "%.1f,%.1f ", X(z.histories[h]), Y(std::max(v, std::pow(10.0, llo))));
      }
      std::fprintf(f, "\"/>\n");
    }
  }
  for (std::size_t i = 0; i < vs.size(); ++i)
    std::fprintf(f, "<text x=\"%g\" y=\"%g\" fill=\"%s\">%s</text>\n", 2 * W + 20, T + 14.0 * double(i),
                 colors[i % 11], vs[i].name.c_str());
  std::fprintf(f, "</svg>\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Sizes z;
  std::string csv = "zoo.csv", svg = "zoo.svg", only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "zoo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&]() -> Index {
      const std::string s = value();
      char* end = nullptr;
      const long long v = std::strtoll(s.c_str(), &end, 10);
      if (end == s.c_str() || *end || v < 1 || v > (1 << 24)) {
        std::fprintf(stderr, "zoo: %s %s: expected an integer in [1, 16777216]\n", a.c_str(), s.c_str());
        std::exit(2);
      }
      return static_cast<Index>(v);
    };
    if (a == "--hidden") z.hidden = number();
    else if (a == "--layers") z.layers = number();
    else if (a == "--heads") z.heads = number();
    else if (a == "--vocab") z.vocab = number();
    else if (a == "--ffn") z.ffn = number();
    else if (a == "--prefill") z.prefill = number();
    else if (a == "--steps") z.steps = number();
    else if (a == "--threads") z.threads = static_cast<int>(number());
    else if (a == "--csv") csv = value();
    else if (a == "--svg") svg = value();
    else if (a == "--variants") only = value();
    else if (a == "--histories") {
      z.histories.clear();
      for (const auto& h : split(value())) {
        const long long v = std::atoll(h.c_str());
        if (v < 1) {
          std::fprintf(stderr, "zoo: --histories: '%s' is not a positive token count\n", h.c_str());
          return 2;
        }
        z.histories.push_back(static_cast<Index>(v));
      }
      if (z.histories.empty() || z.histories.size() > std::size_t(kMaxHist)) {
        std::fprintf(stderr, "zoo: --histories takes 1 to %d comma-separated counts\n", kMaxHist);
        return 2;
      }
      std::sort(z.histories.begin(), z.histories.end());
    } else {
      std::fprintf(stderr,
                   "usage: zoo [--hidden N] [--layers N] [--heads N] [--vocab N] [--ffn N] [--prefill N] [--steps N]\n"
                   "           [--threads N] [--histories A,B,...] [--variants a,b,...] [--csv FILE] [--svg FILE]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  std::vector<Variant> vs;
  const std::vector<std::string> wanted = split(only);
  for (const Variant& v : all_variants())
    if (only.empty() || std::find(wanted.begin(), wanted.end(), v.name) != wanted.end()) vs.push_back(v);
  if (vs.empty()) {
    std::fprintf(stderr, "zoo: no variant matches '%s' (known: mha gqa mqa swa longnet mla retnet gated kan yoco bitnet)\n",
                 only.c_str());
    return 2;
  }

  std::printf("eigenformer zoo: %zu decoders of width %ld, %ld layers, %ld heads, FFN %ld, vocab %ld; %d thread(s)\n",
              vs.size(), long(z.hidden), long(z.layers), long(z.heads), long(z.ffn), long(z.vocab), z.threads);
  std::vector<Result> rs;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < vs.size(); ++i) {
    const int done = int(40 * i / vs.size());
    std::fprintf(stderr, "\r[%-40s] %zu/%zu %-8s", std::string(std::size_t(done), '#').c_str(), i, vs.size(),
                 vs[i].name.c_str());
    std::fflush(stderr);
    rs.push_back(run_isolated(vs[i], z));
  }
  std::fprintf(stderr, "\r[%s] %zu/%zu done in %.1f s\n", std::string(40, '#').c_str(), vs.size(), vs.size(),
               seconds_since(t0));

  std::printf("\n%-8s %10s %12s", "variant", "weights", "prefill");
  for (Index h : z.histories) std::printf(" %10s", ("dec@" + human_tokens(h)).c_str());
  std::printf(" %12s %10s %10s  %s\n", ("cache@" + human_tokens(z.histories.back())).c_str(), "B/tok/lyr",
              "peak RSS", "mixer");
  std::printf("%-8s %10s %12s", "", "(MiB)", "(tok/s)");
  for (std::size_t h = 0; h < z.histories.size(); ++h) std::printf(" %10s", "(ms/tok)");
  std::printf(" %12s %10s %10s\n", "(MiB)", "(cache)", "(MiB)");
  for (std::size_t i = 0; i < vs.size(); ++i) {
    const Result& r = rs[i];
    if (r.error[0]) {
      std::printf("%-8s error: %s\n", vs[i].name.c_str(), r.error);
      continue;
    }
    std::printf("%-8s %10.1f %12.0f", vs[i].name.c_str(), r.weight_bytes / 1048576.0, r.prefill_tok_s);
    for (std::size_t h = 0; h < z.histories.size(); ++h) std::printf(" %10.3f", r.decode_ms[h]);
    std::printf(" %12.1f %10.0f %10.1f  %s\n", r.cache_bytes[z.histories.size() - 1] / 1048576.0,
                r.cache_bytes_per_token_layer, r.peak_rss_bytes / 1048576.0, vs[i].what.c_str());
  }
  for (std::size_t i = 0; i < vs.size(); ++i)
    if (rs[i].block_bits_per_weight > 0 && !rs[i].error[0])
      std::printf("%s: the ternary blocks hold %.2f bits per weight (packed weights, scales and norms)\n",
                  vs[i].name.c_str(), rs[i].block_bits_per_weight);

  if (std::FILE* f = std::fopen(csv.c_str(), "w")) {
    std::fprintf(f, "variant,history,prefill_tok_s,decode_ms_per_token,cache_bytes,weight_bytes,peak_rss_bytes\n");
    for (std::size_t i = 0; i < vs.size(); ++i)
      for (std::size_t h = 0; h < z.histories.size() && !rs[i].error[0]; ++h)
        std::fprintf(f, "%s,%ld,%.1f,%.4f,%.0f,%.0f,%.0f\n", vs[i].name.c_str(), long(z.histories[h]),
                     rs[i].prefill_tok_s, rs[i].decode_ms[h], rs[i].cache_bytes[h], rs[i].weight_bytes,
                     rs[i].peak_rss_bytes);
    std::fclose(f);
    std::printf("\nwrote %s", csv.c_str());
  } else {
    std::fprintf(stderr, "zoo: cannot write %s\n", csv.c_str());
  }
  write_svg(svg, vs, rs, z);
  std::printf(" and %s\n", svg.c_str());
  for (const Result& r : rs)
    if (r.error[0]) return 1;
  return 0;
}
