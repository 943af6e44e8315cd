// MultiHeadLatentAttention against Hugging Face's own DeepseekV3Attention: every fixture in
// tests/data/golden/mla (written by tools/make_golden_mla.py from transformers 4.57.6: with and
// without q_lora_rank, YaRN with mscale / mscale_all_dim, rope_interleave true and false, biases,
// position ids) is loaded by the module's state-dict names, configured from the fixture's HF config
// metadata alone, and run through every form: prefill (expanded, absorbed), decode through f32 and
// f16 latent caches, and an expanded KV cache. Also checked: the softmax scale and RoPE attention
// factor against the module's own, and the cached rows against the module's normalized latent and
// rotated RoPE key in the documented order.
#include <eigenformer/attention/mla.hpp>

#include <algorithm>
#include <string>

#include "golden_util.hpp"
#include "test_util.hpp"

using namespace eigenformer;

namespace {

using eftest::json_number;
using eftest::meta;
using eftest::max_abs_diff;
std::string data_dir() { return eftest::golden_dir("mla"); }
std::vector<std::string> fixtures() { return eftest::golden_fixtures("mla"); }

// The layer's configuration from HF's config fields only (not from the derived.* values).
MLAConfig config_from(const SafeTensors& st) {
  MLAConfig c;
  c.hidden_size = std::stol(meta(st, "hidden_size"));
  c.num_attention_heads = std::stol(meta(st, "num_attention_heads"));
  c.num_key_value_heads = std::stol(meta(st, "num_key_value_heads"));
  const std::string& q_lora = meta(st, "q_lora_rank");
  c.q_lora_rank = q_lora == "null" ? 0 : std::stol(q_lora);
  c.kv_lora_rank = std::stol(meta(st, "kv_lora_rank"));
  c.qk_nope_head_dim = std::stol(meta(st, "qk_nope_head_dim"));
  c.qk_rope_head_dim = std::stol(meta(st, "qk_rope_head_dim"));
  c.v_head_dim = std::stol(meta(st, "v_head_dim"));
  c.attention_bias = meta(st, "attention_bias") == "true";
  c.rope_interleave = meta(st, "rope_interleave") == "true";
  c.rope.theta = std::stod(meta(st, "rope_theta"));
  c.rope.max_position_embeddings = std::stol(meta(st, "max_position_embeddings"));
  const std::string& js = meta(st, "rope_scaling");
  if (js != "null") {
    const auto p = js.find("\"rope_type\"");
    const auto q0 = js.find('"', js.find(':', p) + 1), q1 = js.find('"', q0 + 1);
    c.rope.scaling.type = RopeScaling::parse(js.substr(q0 + 1, q1 - q0 - 1));
    double v;
    if (json_number(js, "factor", v)) c.rope.scaling.factor = v;
    if (json_number(js, "original_max_position_embeddings", v))
      c.rope.scaling.original_max_position_embeddings = static_cast<Index>(v);
    if (json_number(js, "beta_fast", v)) c.rope.scaling.beta_fast = v;
    if (json_number(js, "beta_slow", v)) c.rope.scaling.beta_slow = v;
    if (json_number(js, "mscale", v)) c.rope.scaling.mscale = v;
    if (json_number(js, "mscale_all_dim", v)) c.rope.scaling.mscale_all_dim = v;
  }
  return c;
}

TEST(MLAGolden, EveryHuggingFaceFixture) {
  const auto names = fixtures();
  ASSERT_FALSE(names.empty()) << "no fixtures in " << data_dir();
  EXPECT_GE(names.size(), 4u);
  bool seen[2][2] = {{false, false}, {false, false}};  // [q_lora][rope_interleave]
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const SafeTensors st = SafeTensors::open(data_dir() + "/" + n + ".safetensors");
    const Matrix<float> x = st.matrix<float>("input.hidden_states", -1, -1);
    const Index T = x.rows(), hidden = x.cols();
    const Matrix<float> want = st.matrix<float>("output.hidden_states", T, hidden);
    const MLAConfig cfg = config_from(st);
    const MultiHeadLatentAttention a = MultiHeadLatentAttention::load(st, "", cfg);
    seen[a.has_q_lora()][cfg.rope_interleave] = true;
    // The module's own scale (qk_head_dim^-0.5 x mscale^2) and RoPE attention factor.
    EXPECT_NEAR(a.scale(), std::stod(meta(st, "derived.scaling")), 1e-15);
    EXPECT_NEAR(a.rotary().attention_scaling(), std::stod(meta(st, "derived.rope_attention_scaling")), 1e-15);

    const std::vector<std::int64_t> pos = st.to_vector<std::int64_t>("input.position_ids");
    bool iota = true;
    for (Index i = 0; i < T; ++i) iota &= pos[static_cast<std::size_t>(i)] == i;

    // Both sides are float32 with different summation orders; the measured worst case is 3.4e-7 of
    // 1 + max |y| over every form (tests/data/golden/mla/README.md).
    const double tol = 1e-5 * (1.0 + want.cwiseAbs().maxCoeff());
    Workspace<float> ws;
    Matrix<float> ye(T, hidden), ya(T, hidden);
    a.forward(x, ye, ws, pos.data(), MLAPath::expanded);
    a.forward(x, ya, ws, pos.data(), MLAPath::absorbed);
    EXPECT_LT(max_abs_diff(ye, want), tol) << "expanded";
    EXPECT_LT(max_abs_diff(ya, want), tol) << "absorbed";
    if (!iota) continue;  // the cached forms number positions from 0

    // Decode: a prompt of 3 tokens, then one at a time, through f32 and f16 latent caches and an
    // expanded KV cache.
    LatentCache<float> cache(a.latent_cache_config(T));
    LatentCache<f16> half(a.latent_cache_config<f16>(T));
    KVCache<float> expanded(a.expanded_cache_config(T));
    Matrix<float> yc(T, hidden), yh(T, hidden), yk(T, hidden);
    a.forward(x.topRows(3), yc.topRows(3), cache, ws);
    a.forward(x.topRows(3), yh.topRows(3), half, ws);
    a.forward(x.topRows(3), yk.topRows(3), expanded, ws);
    for (Index t = 3; t < T; ++t) {
      a.forward(x.middleRows(t, 1), yc.middleRows(t, 1), cache, ws);
      a.forward(x.middleRows(t, 1), yh.middleRows(t, 1), half, ws);
      a.forward(x.middleRows(t, 1), yk.middleRows(t, 1), expanded, ws);
    }
    EXPECT_LT(max_abs_diff(yc, want), tol) << "latent cache";
    EXPECT_LT(max_abs_diff(yk, want), tol) << "expanded KV cache";
    EXPECT_LT(max_abs_diff(yh, want), 4 * std::ldexp(1.0, -11) * want.cwiseAbs().maxCoeff()) << "f16 latent cache";

    // The cache rows: [kv_a_layernorm(c) | k_rot], k_rot pair-interleaved when rope_interleave
    // (row[r + 2i] = HF[i], row[r + 2i + 1] = HF[dr/2 + i]), in HF's order otherwise.
    const Index r = cfg.kv_lora_rank, dr = cfg.qk_rope_head_dim;
    const Matrix<float> c = st.matrix<float>("intermediate.compressed_kv_normed", T, r);
    const Matrix<float> kr = st.matrix<float>("intermediate.k_rot", T, dr);
    double worst_c = 0, worst_k = 0;
    for (Index t = 0; t < T; ++t) {
      const float* row = cache.row(t);
      for (Index i = 0; i < r; ++i) worst_c = std::max(worst_c, double(std::fabs(row[i] - c(t, i))));
      for (Index i = 0; i < dr / 2; ++i) {
        const Index a0 = cfg.rope_interleave ? 2 * i : i, a1 = cfg.rope_interleave ? 2 * i + 1 : dr / 2 + i;
        worst_k = std::max(worst_k, double(std::fabs(row[r + a0] - kr(t, i))));
        worst_k = std::max(worst_k, double(std::fabs(row[r + a1] - kr(t, dr / 2 + i))));
      }
    }
    EXPECT_LT(worst_c, 1e-5 * (1.0 + c.cwiseAbs().maxCoeff()));
    EXPECT_LT(worst_k, 1e-5 * (1.0 + kr.cwiseAbs().maxCoeff()));
  }
  // The fixture set covers both query forms and both RoPE layouts.
  EXPECT_TRUE(seen[1][1] && seen[0][0] && seen[0][1]) << "missing a q_lora / rope_interleave combination";
}

}  // namespace
