// MultiHeadLatentAttention (DeepSeek MLA): both execution paths (expanded, absorbed) and every form
// (prefill, decode through the latent cache, decode through an expanded KV cache) against an
// independent double-precision reference written plainly here: the projections and RMSNorms in
// double, RoPE the way Hugging Face applies it (for rope_interleave: de-interleave the rope dims, then
// rotate_half, through RotaryEmbedding in double), per-head K = [k_nope | k_rope] and V decompressed
// from the latent, then tests/reference_attention.hpp with dv != d. Also: LatentCache, cache-size
// accounting, f16/bf16 latent caches, loading by HF names, and the errors.
#include <eigenformer/attention/mla.hpp>
#include <eigenformer/core/threading.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefMatrix;

namespace {

using eftest::random_matrix;

const char* kName = "model.layers.0.self_attn";

// A layer with random weights: N(0, gain^2 / fan_in) weights (logits of a few units), RMSNorm
// weights 1 + N(0, 0.04), biases N(0, 0.09).
MultiHeadLatentAttention make_layer(const MLAConfig& cfg, std::mt19937& g) {
  MultiHeadLatentAttention a(cfg, kName);
  auto fill = [&](Linear<float>& l, double gain) {
    l.weight() = random_matrix<float>(l.out_features(), l.in_features(), g, gain / std::sqrt(double(l.in_features())));
    if (l.has_bias()) l.bias() = random_matrix<float>(l.out_features(), 1, g, 0.3);
  };
  auto norm = [&](RMSNorm<float>& n) {
    const Index d = n.config().hidden_size;
    Vector<float> w = Vector<float>::Ones(d) + Vector<float>(random_matrix<float>(d, 1, g, 0.2));
    n = RMSNorm<float>(n.config(), w, "norm");
  };
  if (a.has_q_lora()) {
    fill(a.q_a_proj(), 1.0);
    norm(a.q_a_layernorm());
    fill(a.q_b_proj(), 1.4);
  } else {
    fill(a.q_proj(), 1.4);
  }
  fill(a.kv_a_proj_with_mqa(), 1.0);
  norm(a.kv_a_layernorm());
  fill(a.kv_b_proj(), 1.4);
  fill(a.o_proj(), 1.0);
  return a;
}

RefMatrix linear_d(const RefMatrix& x, const Linear<float>& l) {
  RefMatrix y = x * l.weight().cast<double>().transpose();
  if (l.has_bias()) y.rowwise() += l.bias().cast<double>().transpose();
  return y;
}

RefMatrix rms_norm_d(const RefMatrix& x, const RMSNorm<float>& n, double eps) {
  RefMatrix y(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i) {
    const double ms = x.row(i).squaredNorm() / double(x.cols());
    for (Index j = 0; j < x.cols(); ++j) y(i, j) = x(i, j) / std::sqrt(ms + eps) * double(n.scale()[j]);
  }
  return y;
}

// HF's apply_rotary_pos_emb_interleave (and apply_rotary_pos_emb) on the [T, heads * dr] rope parts:
// with interleave, view the dims as (dr/2, 2), transpose, reshape (evens then odds), then rotate_half.
// Returns the rotated dims in HF's order.
RefMatrix hf_rope_d(RefMatrix x, Index heads, const MLAConfig& c, const std::vector<long>& pos) {
  const Index dr = c.qk_rope_head_dim;
  if (c.rope_interleave) {
    RefMatrix p(x.rows(), x.cols());
    for (Index t = 0; t < x.rows(); ++t)
      for (Index h = 0; h < heads; ++h)
        for (Index i = 0; i < dr / 2; ++i) {
          p(t, h * dr + i) = x(t, h * dr + 2 * i);
          p(t, h * dr + dr / 2 + i) = x(t, h * dr + 2 * i + 1);
        }
    x = p;
  }
  RopeConfig rc = c.rope;
  rc.layout = RopeLayout::half;
  const RotaryEmbedding rope(rc);
  std::vector<std::int64_t> p(pos.begin(), pos.end());
  Matrix<double> m = x;
  rope.apply<double>(m, heads, p.data());
  return m;
}

struct RefParts {
  RefMatrix q, k, v, latent, k_rope;  // q/k [T, H*dq] (HF order), v [T, H*dv], latent [T, r], k_rope [T, dr]
};

RefParts reference_parts(const MultiHeadLatentAttention& a, const Matrix<float>& x, const std::vector<long>& pos) {
  const MLAConfig& c = a.config();
  const Index T = x.rows(), H = c.num_attention_heads, r = c.kv_lora_rank, dn = c.qk_nope_head_dim,
              dr = c.qk_rope_head_dim, dv = c.v_head_dim, dq = dn + dr;
  const RefMatrix xd = x.cast<double>();
  RefMatrix q = a.has_q_lora() ? linear_d(rms_norm_d(linear_d(xd, a.q_a_proj()), a.q_a_layernorm(), c.norm_eps),
                                          a.q_b_proj())
                               : linear_d(xd, a.q_proj());
  const RefMatrix ckv = linear_d(xd, a.kv_a_proj_with_mqa());
  RefParts p;
  p.latent = rms_norm_d(ckv.leftCols(r), a.kv_a_layernorm(), c.norm_eps);
  p.k_rope = hf_rope_d(ckv.rightCols(dr), 1, c, pos);
  RefMatrix q_rope(T, H * dr);
  for (Index h = 0; h < H; ++h) q_rope.middleCols(h * dr, dr) = q.middleCols(h * dq + dn, dr);
  q_rope = hf_rope_d(q_rope, H, c, pos);
  const RefMatrix kvb = p.latent * a.kv_b_proj().weight().cast<double>().transpose();  // [T, H (dn + dv)]
  p.q = q;
  p.k.resize(T, H * dq);
  p.v.resize(T, H * dv);
  for (Index h = 0; h < H; ++h) {
    p.q.middleCols(h * dq + dn, dr) = q_rope.middleCols(h * dr, dr);
    p.k.middleCols(h * dq, dn) = kvb.middleCols(h * (dn + dv), dn);
    p.k.middleCols(h * dq + dn, dr) = p.k_rope;
    p.v.middleCols(h * dv, dv) = kvb.middleCols(h * (dn + dv) + dn, dv);
  }
  return p;
}

// The whole layer in double; the scale is computed here from the config, not taken from the layer.
RefMatrix reference_layer(const MultiHeadLatentAttention& a, const Matrix<float>& x, const std::vector<long>& pos) {
  const MLAConfig& c = a.config();
  const RefParts p = reference_parts(a, x, pos);
  eftest::RefAttentionOptions o;
  o.scale = 1.0 / std::sqrt(double(c.qk_nope_head_dim + c.qk_rope_head_dim));
  if (c.rope.scaling.type != RopeType::none && c.rope.scaling.mscale_all_dim != 0) {
    const double m = 0.1 * c.rope.scaling.mscale_all_dim * std::log(c.rope.scaling.factor) + 1.0;
    if (c.rope.scaling.factor > 1) o.scale *= m * m;
  }
  const RefMatrix att = eftest::reference_attention(p.q, p.k, p.v, eftest::iota_positions(x.rows()),
                                                    eftest::iota_positions(x.rows()), c.num_attention_heads,
                                                    c.num_attention_heads, o);
  return linear_d(att, a.o_proj());
}

double max_abs(const Matrix<float>& a) { return a.size() ? double(a.cwiseAbs().maxCoeff()) : 0.0; }
using eftest::max_abs_diff;

// Float layer vs double reference, relative to 1 + max |y|: the layer chains up to four float
// products (q_a, q_b, kv_b or the absorption, o_proj) of length <= 512 and the attention. Measured
// worst case over the variants below (seed 20261128, AVX2): 1.2e-6 against the reference, 1.1e-6
// between the paths and between decode and prefill.
constexpr double kRefTol = 1e-5;
// Expanded vs absorbed, decode vs prefill (float both sides, different summation orders).
constexpr double kPathTol = 1e-5;

MLAConfig small_config() {
  MLAConfig c;
  c.hidden_size = 48;
  c.num_attention_heads = 4;
  c.q_lora_rank = 16;
  c.kv_lora_rank = 24;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 12;
  c.rope.theta = 10000;
  return c;
}

struct Variant {
  const char* name;
  MLAConfig (*make)();
  Index max_T;  // longest sequence tested (keeps the big shapes fast under ASan)
};

const Variant kVariants[] = {
    {"q_lora_interleave", [] { return small_config(); }, 40},
    {"q_proj_half_layout_bias",
     [] {
       MLAConfig c = small_config();
       c.q_lora_rank = 0;
       c.rope_interleave = false;
       c.attention_bias = true;
       return c;
     },
     40},
    {"yarn_mscale_all_dim",
     [] {
       MLAConfig c = small_config();
       c.rope.max_position_embeddings = 64;
       c.rope.scaling.type = RopeType::yarn;
       c.rope.scaling.factor = 4;
       c.rope.scaling.original_max_position_embeddings = 16;
       c.rope.scaling.mscale = 1.0;
       c.rope.scaling.mscale_all_dim = 0.8;
       return c;
     },
     40},
    {"odd_sizes_cross_simd_tails",
     [] {
       MLAConfig c;
       c.hidden_size = 40;
       c.num_attention_heads = 3;
       c.q_lora_rank = 0;
       c.kv_lora_rank = 33;
       c.qk_nope_head_dim = 5;
       c.qk_rope_head_dim = 6;
       c.v_head_dim = 7;
       return c;
     },
     40},
    // 16 heads: absorbed decode runs the attention kernel's wide route (16 query rows on the one
    // latent kv head), as V2-Lite does.
    {"sixteen_heads_wide_decode",
     [] {
       MLAConfig c;
       c.hidden_size = 48;
       c.num_attention_heads = 16;
       c.q_lora_rank = 24;
       c.kv_lora_rank = 40;
       c.qk_nope_head_dim = 8;
       c.qk_rope_head_dim = 6;
       c.v_head_dim = 12;
       return c;
     },
     24},
    // DeepSeek-V2-Lite's head shapes (q_proj, dn 128, dr 64, dv 128, r 512, its YaRN), 2 heads.
    {"v2_lite_head_shapes",
     [] {
       MLAConfig c = MLAConfig::deepseek_v2_lite();
       c.hidden_size = 128;
       c.num_attention_heads = c.num_key_value_heads = 2;
       return c;
     },
     20},
    // DeepSeek-V3's head shapes with query compression (q_lora_rank scaled down), 2 heads.
    {"v3_head_shapes_q_lora",
     [] {
       MLAConfig c = MLAConfig::deepseek_v3();
       c.hidden_size = 128;
       c.num_attention_heads = c.num_key_value_heads = 2;
       c.q_lora_rank = 96;
       return c;
     },
     20},
};

class MLAVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(MLAVariants, PrefillBothPathsMatchReference) {
  auto g = eftest::rng(900);
  const MultiHeadLatentAttention a = make_layer(GetParam().make(), g);
  const Index hidden = a.config().hidden_size;
  Workspace<float> ws;
  for (Index T : {Index(1), Index(7), GetParam().max_T}) {
    Matrix<float> x = random_matrix<float>(T, hidden, g), ye(T, hidden), ya(T, hidden), yauto(T, hidden);
    a.forward(x, ye, ws, nullptr, MLAPath::expanded);
    a.forward(x, ya, ws, nullptr, MLAPath::absorbed);
    a.forward(x, yauto, ws);
    const RefMatrix ref = reference_layer(a, x, eftest::iota_positions(T));
    const double scale = 1.0 + ref.cwiseAbs().maxCoeff();
    EXPECT_LT(max_abs_diff(ye, ref), kRefTol * scale) << "expanded, T=" << T;
    EXPECT_LT(max_abs_diff(ya, ref), kRefTol * scale) << "absorbed, T=" << T;
    EXPECT_LT(max_abs_diff(ye, ya), kPathTol * scale) << "expanded vs absorbed, T=" << T;
    EXPECT_EQ(yauto, a.choose_path(T, T) == MLAPath::expanded ? ye : ya) << "automatic, T=" << T;
  }
}

TEST_P(MLAVariants, DecodeThroughLatentCacheEqualsPrefill) {
  auto g = eftest::rng(901);
  const MultiHeadLatentAttention a = make_layer(GetParam().make(), g);
  const Index hidden = a.config().hidden_size, T = GetParam().max_T;
  Matrix<float> x = random_matrix<float>(T, hidden, g), full(T, hidden);
  Workspace<float> ws;
  a.forward(x, full, ws, nullptr, MLAPath::expanded);
  const RefMatrix ref = reference_layer(a, x, eftest::iota_positions(T));
  const double scale = 1.0 + ref.cwiseAbs().maxCoeff();
  // A prompt of 5, then 1 and 3 tokens, then one at a time; every multi-token chunk through each path.
  for (MLAPath path : {MLAPath::automatic, MLAPath::absorbed, MLAPath::expanded}) {
    LatentCache<float> cache(a.latent_cache_config(T + 3));
    Matrix<float> step(T, hidden);
    Index t = 0;
    for (Index n : {5, 1, 3}) {
      a.forward(x.middleRows(t, n), step.middleRows(t, n), cache, ws, path);
      t += n;
    }
    for (; t < T; ++t) a.forward(x.middleRows(t, 1), step.middleRows(t, 1), cache, ws, path);
    EXPECT_EQ(cache.size(), T);
    EXPECT_EQ(cache.next_position(), T);
    EXPECT_LT(max_abs_diff(step, full), kPathTol * scale) << to_string(path);
    EXPECT_LT(max_abs_diff(step, ref), kRefTol * scale) << to_string(path);
  }
}

TEST_P(MLAVariants, LatentCacheHoldsNormalizedLatentAndRotatedRopeKey) {
  auto g = eftest::rng(902);
  const MultiHeadLatentAttention a = make_layer(GetParam().make(), g);
  const MLAConfig& c = a.config();
  const Index T = 9, r = c.kv_lora_rank, dr = c.qk_rope_head_dim;
  Matrix<float> x = random_matrix<float>(T, c.hidden_size, g), y(T, c.hidden_size);
  Workspace<float> ws;
  LatentCache<float> cache(a.latent_cache_config(T));
  a.forward(x, y, cache, ws);
  const RefParts p = reference_parts(a, x, eftest::iota_positions(T));
  double worst_c = 0, worst_k = 0;
  for (Index t = 0; t < T; ++t) {
    const float* row = cache.row(t);
    for (Index i = 0; i < r; ++i) worst_c = std::max(worst_c, std::fabs(row[i] - p.latent(t, i)));
    for (Index i = 0; i < dr / 2; ++i) {
      // The documented order: interleaved pairs (y[2i], y[2i+1]) = (y_HF[i], y_HF[dr/2 + i]); half: as HF.
      const Index a0 = c.rope_interleave ? 2 * i : i, a1 = c.rope_interleave ? 2 * i + 1 : dr / 2 + i;
      worst_k = std::max(worst_k, std::fabs(row[r + a0] - p.k_rope(t, i)));
      worst_k = std::max(worst_k, std::fabs(row[r + a1] - p.k_rope(t, dr / 2 + i)));
    }
  }
  EXPECT_LT(worst_c, 1e-5 * (1 + p.latent.cwiseAbs().maxCoeff()));
  EXPECT_LT(worst_k, 1e-5 * (1 + p.k_rope.cwiseAbs().maxCoeff()));
}

TEST_P(MLAVariants, ExpandedKVCacheFormEqualsLatentCacheForm) {
  auto g = eftest::rng(903);
  const MultiHeadLatentAttention a = make_layer(GetParam().make(), g);
  const Index hidden = a.config().hidden_size, T = std::min<Index>(GetParam().max_T, 17);
  Matrix<float> x = random_matrix<float>(T, hidden, g), lat(T, hidden), exp(T, hidden);
  Workspace<float> ws;
  LatentCache<float> lc(a.latent_cache_config(T));
  KVCache<float> kc(a.expanded_cache_config(T));
  a.forward(x.topRows(4), lat.topRows(4), lc, ws);
  a.forward(x.topRows(4), exp.topRows(4), kc, ws);
  for (Index t = 4; t < T; ++t) {
    a.forward(x.middleRows(t, 1), lat.middleRows(t, 1), lc, ws);
    a.forward(x.middleRows(t, 1), exp.middleRows(t, 1), kc, ws);
  }
  EXPECT_EQ(kc.size(), T);
  EXPECT_LT(max_abs_diff(lat, exp), kPathTol * (1 + max_abs(exp)));
}

INSTANTIATE_TEST_SUITE_P(All, MLAVariants, ::testing::ValuesIn(kVariants),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MLA, PositionIdsInPrefill) {
  auto g = eftest::rng(904);
  MLAConfig cfg = small_config();
  cfg.rope.scaling.type = RopeType::linear;
  cfg.rope.scaling.factor = 2;
  const MultiHeadLatentAttention a = make_layer(cfg, g);
  const Index T = 11;
  Matrix<float> x = random_matrix<float>(T, 48, g), ye(T, 48), ya(T, 48);
  std::vector<std::int64_t> pos(T);
  std::vector<long> posl(T);
  for (Index i = 0; i < T; ++i) pos[i] = posl[i] = 17 + 2 * i;
  Workspace<float> ws;
  a.forward(x, ye, ws, pos.data(), MLAPath::expanded);
  a.forward(x, ya, ws, pos.data(), MLAPath::absorbed);
  const RefParts p = reference_parts(a, x, posl);
  eftest::RefAttentionOptions o;
  o.scale = a.scale();
  const RefMatrix ref = linear_d(
      eftest::reference_attention(p.q, p.k, p.v, eftest::iota_positions(T), eftest::iota_positions(T), 4, 4, o),
      a.o_proj());
  const double scale = 1.0 + ref.cwiseAbs().maxCoeff();
  EXPECT_LT(max_abs_diff(ye, ref), kRefTol * scale);
  EXPECT_LT(max_abs_diff(ya, ref), kRefTol * scale);
}

// A context longer than 2 x 1024 keys: absorbed decode splits the latent rows into chunks merged by
// log-sum-exp; it must still equal the expanded prefill of the whole sequence.
TEST(MLA, LongContextDecodeWithSplitChunks) {
  auto g = eftest::rng(905);
  MLAConfig cfg = small_config();
  cfg.num_attention_heads = 2;
  const MultiHeadLatentAttention a = make_layer(cfg, g);
  const Index P = 2100, T = P + 4;
  Matrix<float> x = random_matrix<float>(T, 48, g), full(T, 48), step(T, 48);
  Workspace<float> ws;
  a.forward(x, full, ws, nullptr, MLAPath::expanded);
  LatentCache<f16> half(a.latent_cache_config<f16>(T));
  LatentCache<float> cache(a.latent_cache_config(T));
  a.forward(x.topRows(P), step.topRows(P), cache, ws);
  for (Index t = P; t < T; ++t) a.forward(x.middleRows(t, 1), step.middleRows(t, 1), cache, ws, MLAPath::absorbed);
  const double scale = 1.0 + max_abs(full);
  EXPECT_LT(max_abs_diff(step, full), kPathTol * scale);
  Matrix<float> h(T, 48);
  a.forward(x.topRows(P), h.topRows(P), half, ws);
  for (Index t = P; t < T; ++t) a.forward(x.middleRows(t, 1), h.middleRows(t, 1), half, ws);
  EXPECT_LT(max_abs_diff(Matrix<float>(h.bottomRows(4)), Matrix<float>(full.bottomRows(4))), 4 * std::ldexp(1.0, -11) * scale);
}

// f16 / bf16 latent caches. Accuracy: every cached value is rounded to 11 (f16) or 8 (bf16)
// significant bits (relative 2^-11 / 2^-8); logits and attention-weighted latents inherit errors of
// that order, which kv_b_proj (W_UV) and o_proj carry to the output. Stated tolerance: 4 x 2^-11
// (f16) and 4 x 2^-8 (bf16) of max |y|; measured at most 0.83 x (f16) and 1.2 x (bf16) over the
// variants below (seed 20261128).
TEST(MLA, HalfAndBf16LatentCachesWithinStatedTolerance) {
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    auto g = eftest::rng(906);
    const MultiHeadLatentAttention a = make_layer(v.make(), g);
    const Index hidden = a.config().hidden_size, T = v.max_T;
    Matrix<float> x = random_matrix<float>(T, hidden, g), full(T, hidden), h(T, hidden), b(T, hidden);
    Workspace<float> ws;
    a.forward(x, full, ws);
    LatentCache<f16> ch(a.latent_cache_config<f16>(T));
    LatentCache<bf16> cb(a.latent_cache_config<bf16>(T));
    a.forward(x.topRows(3), h.topRows(3), ch, ws);
    a.forward(x.topRows(3), b.topRows(3), cb, ws);
    for (Index t = 3; t < T; ++t) {
      a.forward(x.middleRows(t, 1), h.middleRows(t, 1), ch, ws);
      a.forward(x.middleRows(t, 1), b.middleRows(t, 1), cb, ws);
    }
    const double scale = max_abs(full);
    EXPECT_LT(max_abs_diff(h, full), 4 * std::ldexp(1.0, -11) * scale);
    EXPECT_LT(max_abs_diff(b, full), 4 * std::ldexp(1.0, -8) * scale);
    EXPECT_GT(max_abs_diff(b, full), 0.0);  // the rounding is really there
    // The caches hold exactly the rounded rows of a float cache fed the same way.
    LatentCache<float> cf(a.latent_cache_config(T));
    Matrix<float> yf(T, hidden);
    a.forward(x.topRows(3), yf.topRows(3), cf, ws);
    for (Index t = 3; t < T; ++t) a.forward(x.middleRows(t, 1), yf.middleRows(t, 1), cf, ws);
    for (Index t = 0; t < T; t += 5)
      for (Index i = 0; i < cf.row_dim(); ++i) {
        ASSERT_EQ(ch.row(t)[i].bits, from_float<f16>(cf.row(t)[i]).bits);
        ASSERT_EQ(cb.row(t)[i].bits, from_float<bf16>(cf.row(t)[i]).bits);
      }
  }
}

TEST(MLA, OutputsDoNotDependOnThreadCount) {
  auto g = eftest::rng(907);
  MLAConfig cfg = MLAConfig::deepseek_v2_lite();
  cfg.hidden_size = 256;
  cfg.num_attention_heads = cfg.num_key_value_heads = 4;
  const MultiHeadLatentAttention a = make_layer(cfg, g);
  const Index T = 24;
  Matrix<float> x = random_matrix<float>(T, 256, g);
  const int saved = num_threads();
  std::vector<Matrix<float>> outs;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Workspace<float> ws;
    Matrix<float> ye(T, 256), ya(T, 256), yd(T, 256);
    a.forward(x, ye, ws, nullptr, MLAPath::expanded);
    a.forward(x, ya, ws, nullptr, MLAPath::absorbed);
    LatentCache<float> cache(a.latent_cache_config(T));
    a.forward(x.topRows(T - 4), yd.topRows(T - 4), cache, ws);
    for (Index t = T - 4; t < T; ++t) a.forward(x.middleRows(t, 1), yd.middleRows(t, 1), cache, ws);
    outs.push_back(ye);
    outs.push_back(ya);
    outs.push_back(yd);
  }
  set_num_threads(saved);
  EXPECT_EQ(outs[0], outs[3]);
  EXPECT_EQ(outs[1], outs[4]);
  EXPECT_EQ(outs[2], outs[5]);
}

TEST(MLA, DecodeAllocatesNothingAfterWarmUp) {
  auto g = eftest::rng(908);
  const MultiHeadLatentAttention a = make_layer(small_config(), g);
  const Index T = 40;
  Matrix<float> x = random_matrix<float>(T, 48, g), y(T, 48);
  Workspace<float> ws;
  LatentCache<f16> cache(a.latent_cache_config<f16>(T));
  a.forward(x.topRows(8), y.topRows(8), cache, ws);
  a.forward(x.middleRows(8, 1), y.middleRows(8, 1), cache, ws);
  const std::size_t allocations = ws.allocations();
  for (Index t = 9; t < T; ++t) a.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
  EXPECT_EQ(ws.allocations(), allocations);
}

TEST(MLA, ScaleFollowsHuggingFace) {
  // HF DeepseekV3Attention: qk_head_dim^-0.5 x yarn_get_mscale(factor, mscale_all_dim)^2. (resolve():
  // the layer's config without allocating V3's ~0.7 GB of weights.)
  const MLAConfig v3 = MultiHeadLatentAttention::resolve(MLAConfig::deepseek_v3());
  const double m3 = 0.1 * 1.0 * std::log(40.0) + 1.0;
  EXPECT_NEAR(v3.scale, m3 * m3 / std::sqrt(192.0), 1e-15);
  EXPECT_EQ(v3.rope.layout, RopeLayout::interleaved);
  EXPECT_EQ(v3.rope.head_dim, 64);
  EXPECT_EQ(v3.num_key_value_heads, 128);
  const MultiHeadLatentAttention lite(MLAConfig::deepseek_v2_lite());
  const double ml = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_NEAR(lite.scale(), ml * ml / std::sqrt(192.0), 1e-15);
  // V2-Lite's rope attention factor is mscale / mscale_all_dim = 1.
  EXPECT_DOUBLE_EQ(lite.rotary().attention_scaling(), 1.0);
  EXPECT_EQ(lite.rotary().layout(), RopeLayout::interleaved);
  EXPECT_EQ(lite.rotary().rotary_dim(), 64);
  MLAConfig plain = small_config();
  EXPECT_DOUBLE_EQ(MultiHeadLatentAttention::resolve(plain).scale, 1.0 / 4.0);
  plain.scale = 0.3;  // explicit
  EXPECT_DOUBLE_EQ(MultiHeadLatentAttention(plain).scale(), 0.3);
  // Parameter count of the real V2-Lite layer (HF module numel).
  EXPECT_EQ(lite.parameters(), 2048 * 3072 + 2048 * 576 + 512 + 512 * 4096 + 2048 * 2048);
}

TEST(MLA, ChoosePathPrefersExpandedForPrefillAndAbsorbedForDecode) {
  const MultiHeadLatentAttention lite(MLAConfig::deepseek_v2_lite());
  EXPECT_EQ(lite.choose_path(2048, 2048), MLAPath::expanded);
  EXPECT_EQ(lite.choose_path(1, 1), MLAPath::expanded);
  EXPECT_EQ(lite.choose_path(1, 2), MLAPath::absorbed);
  EXPECT_EQ(lite.choose_path(1, 16384), MLAPath::absorbed);
  EXPECT_EQ(lite.choose_path(64, 16384), MLAPath::absorbed);
  EXPECT_EQ(lite.choose_path(1024, 16384), MLAPath::expanded);
}

// ------------------------------------------------------------------------------------------------
// LatentCache and accounting
// ------------------------------------------------------------------------------------------------

TEST(LatentCache, SpanAliasesValueIntoKeyRows) {
  LatentCache<float> c({5, 2, 4});
  EXPECT_EQ(c.row_dim(), 7);
  Matrix<float> rows(3, 7);
  for (Index i = 0; i < rows.size(); ++i) rows.data()[i] = float(i);
  c.append(rows.topRows(2));
  c.append(rows.bottomRows(1));
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c.next_position(), 3);
  const KVSpan<float> s = c.span();
  EXPECT_EQ(s.k, s.v);
  EXPECT_EQ(s.k_ld, 7);
  EXPECT_EQ(s.v_ld, 7);
  EXPECT_EQ(s.tokens, 3);
  EXPECT_EQ(s.pos0, 0);
  EXPECT_EQ(s.k[2 * 7 + 6], 20.0f);
  EXPECT_EQ(c.row(1)[0], 7.0f);
  EXPECT_EQ(c.bytes(), 4u * 7u * sizeof(float));
  EXPECT_THROW(c.row(3), Error);
  // Full: capacity error, nothing appended.
  try {
    c.append(rows.topRows(2));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::capacity);
    EXPECT_STREQ(e.what(),
                 "eigenformer: LatentCache::append: cache holds 3 of 4 tokens; appending 2 more would overflow it");
  }
  EXPECT_EQ(c.size(), 3);
  Matrix<float> wrong(1, 6);
  EXPECT_THROW(c.append(wrong), Error);
  c.clear();
  EXPECT_EQ(c.size(), 0);
  EXPECT_EQ(c.next_position(), 0);
  EXPECT_THROW(LatentCache<float>({0, 64, 8}), Error);
  EXPECT_THROW(LatentCache<float>({512, 64, 0}), Error);
}

TEST(LatentCache, FootprintsAtDeepSeekShapes) {
  // 576 values per token per layer vs 16 x (192 + 128) = 5120 expanded (V2-Lite), 128 x 320 (V3).
  EXPECT_EQ(LatentCache<float>::bytes_per_token(512, 64), 576u * 4u);
  EXPECT_EQ(LatentCache<f16>::bytes_per_token(512, 64), 576u * 2u);
  const MultiHeadLatentAttention lite(MLAConfig::deepseek_v2_lite());
  const auto f = lite.cache_footprints(2);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].values_per_token, 576);
  EXPECT_EQ(f[0].bytes_per_token(), 1152u);
  EXPECT_EQ(f[1].values_per_token, 5120);
  EXPECT_EQ(f[1].layout, "16 x (192 + 128)");
  EXPECT_EQ(kv_cache_footprint("MLA expanded", 128, 192, 128, 4).values_per_token, 40960);  // V3
  const auto mha = kv_cache_footprint("MHA", 16, 128, 128, 4);
  const auto gqa = kv_cache_footprint("GQA-8", 8, 128, 128, 4);
  const auto mqa = kv_cache_footprint("MQA", 1, 128, 128, 4);
  EXPECT_EQ(mha.bytes_per_token(), 16384u);
  EXPECT_EQ(gqa.bytes_per_token(), 8192u);
  EXPECT_EQ(mqa.bytes_per_token(), 1024u);
  EXPECT_DOUBLE_EQ(mha.bytes(32768, 27), 16384.0 * 32768 * 27);
  const std::string table = format_footprints({mha, gqa, mqa, latent_cache_footprint(512, 64, 4)}, 32768, 27);
  EXPECT_NE(table.find("MHA"), std::string::npos);
  EXPECT_NE(table.find("512 + 64"), std::string::npos);
  EXPECT_NE(table.find("512.00 MiB"), std::string::npos);  // MHA: 16 KiB x 32768 tokens, one layer
  EXPECT_NE(table.find("72.00 MiB"), std::string::npos);   // MLA: 2304 B x 32768
  EXPECT_NE(table.find("0.141x"), std::string::npos);      // 576 / 4096
  EXPECT_THROW(kv_cache_footprint("bad", 0, 128, 128, 4), Error);
}

// ------------------------------------------------------------------------------------------------
// Loading and errors
// ------------------------------------------------------------------------------------------------

SafeTensors write_checkpoint(const MultiHeadLatentAttention& a, const std::string& p, bool drop_kv_b = false) {
  SafeTensorsWriter w;
  auto lin = [&](const std::string& n, const Linear<float>& l) {
    w.add(p + n + ".weight", l.weight());
    if (l.has_bias()) w.add(p + n + ".bias", l.bias());
  };
  if (a.has_q_lora()) {
    lin("q_a_proj", a.q_a_proj());
    w.add(p + "q_a_layernorm.weight", a.q_a_layernorm().scale());
    lin("q_b_proj", a.q_b_proj());
  } else {
    lin("q_proj", a.q_proj());
  }
  lin("kv_a_proj_with_mqa", a.kv_a_proj_with_mqa());
  w.add(p + "kv_a_layernorm.weight", a.kv_a_layernorm().scale());
  if (!drop_kv_b) lin("kv_b_proj", a.kv_b_proj());
  lin("o_proj", a.o_proj());
  return SafeTensors::from_bytes(w.to_bytes());
}

TEST(MLA, LoadsHuggingFaceNames) {
  for (bool q_lora : {true, false}) {
    auto g = eftest::rng(909);
    MLAConfig cfg = small_config();
    cfg.q_lora_rank = q_lora ? 16 : 0;
    cfg.attention_bias = true;
    const MultiHeadLatentAttention src = make_layer(cfg, g);
    const SafeTensors st = write_checkpoint(src, "model.layers.3.self_attn.");
    const MultiHeadLatentAttention a = MultiHeadLatentAttention::load(st, "model.layers.3.self_attn", cfg);
    Matrix<float> x = random_matrix<float>(9, 48, g), y1(9, 48), y2(9, 48);
    Workspace<float> ws;
    src.forward(x, y1, ws);
    a.forward(x, y2, ws);
    EXPECT_EQ(y1, y2);
    EXPECT_EQ(a.parameters(), src.parameters());
    // The other query layout: a config error that says what to set.
    MLAConfig other = cfg;
    other.q_lora_rank = q_lora ? 0 : 16;
    try {
      MultiHeadLatentAttention::load(st, "model.layers.3.self_attn", other);
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::config);
      EXPECT_NE(std::string(e.what()).find(q_lora ? "set q_lora_rank to the rows of q_a_proj (16)" : "set q_lora_rank = 0"),
                std::string::npos)
          << e.what();
    }
    // A wrong latent width: the shape error names the sub-layer and both shapes.
    MLAConfig wide = cfg;
    wide.kv_lora_rank = 32;
    try {
      MultiHeadLatentAttention::load(st, "model.layers.3.self_attn", wide);
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::shape_mismatch);
      EXPECT_NE(std::string(e.what()).find("kv_a_proj_with_mqa"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[32, 48], expected [40, 48]"), std::string::npos) << e.what();
    }
  }
  // A missing weight.
  auto g = eftest::rng(910);
  const MultiHeadLatentAttention src = make_layer(small_config(), g);
  const SafeTensors st = write_checkpoint(src, "attn.", /*drop_kv_b=*/true);
  try {
    MultiHeadLatentAttention::load(st, "attn", small_config());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::missing_weight);
    EXPECT_NE(std::string(e.what()).find("'attn.kv_b_proj.weight' not found"), std::string::npos) << e.what();
  }
}

std::string config_error(const MLAConfig& c) {
  try {
    MultiHeadLatentAttention a(c, kName);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

TEST(MLA, ConfigErrorsNameLayerParameterAndSizes) {
  const std::string w = "eigenformer: MultiHeadLatentAttention 'model.layers.0.self_attn': ";
  MLAConfig c = small_config();
  c.kv_lora_rank = 0;
  EXPECT_EQ(config_error(c), w + "kv_lora_rank = 0 must be >= 1 (the width of the cached latent c_kv)");
  c = small_config();
  c.qk_rope_head_dim = 7;
  EXPECT_EQ(config_error(c), w + "qk_rope_head_dim = 7 must be even and >= 2 (RoPE rotates pairs of dims)");
  c = small_config();
  c.num_key_value_heads = 2;
  EXPECT_EQ(config_error(c), w + "num_key_value_heads = 2 must equal num_attention_heads = 4 (MLA decompresses "
                                 "K/V per head; there is no kv-head grouping)");
  c = small_config();
  c.v_head_dim = 0;
  EXPECT_EQ(config_error(c), w + "qk_nope_head_dim = 8 and v_head_dim = 0 must be >= 1");
  c = small_config();
  c.q_lora_rank = -1;
  EXPECT_NE(config_error(c).find("q_lora_rank = -1"), std::string::npos);
  c = small_config();
  c.rope.rotary_dim = 4;
  EXPECT_NE(config_error(c).find("rope.rotary_dim = 4 must be 0 or qk_rope_head_dim = 8"), std::string::npos);
  c = small_config();
  c.rope_interleave = false;
  c.rope.layout = RopeLayout::interleaved;
  EXPECT_NE(config_error(c).find("rope_interleave"), std::string::npos);
  c = small_config();
  c.rope.scaling.type = RopeType::yarn;  // no original_max_position_embeddings or max_position_embeddings
  EXPECT_NE(config_error(c).find("yarn needs original_max_position_embeddings"), std::string::npos);
  c = small_config();
  c.hidden_size = 0;
  EXPECT_NE(config_error(c).find("hidden_size = 0"), std::string::npos);
  c = small_config();
  c.scale = -1;
  EXPECT_NE(config_error(c).find("scale = -1 must be > 0"), std::string::npos);
}

TEST(MLA, ShapeAndCacheErrors) {
  auto g = eftest::rng(911);
  const MultiHeadLatentAttention a = make_layer(small_config(), g);
  Workspace<float> ws;
  Matrix<float> x(3, 47), y(3, 48);
  try {
    a.forward(x, y, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "eigenformer: MultiHeadLatentAttention 'model.layers.0.self_attn': input x has shape "
                           "[3, 47], expected [*, 48]");
  }
  Matrix<float> x3 = random_matrix<float>(3, 48, g), y2(2, 48);
  EXPECT_THROW(a.forward(x3, y2, ws), Error);
  // A full cache: clear error, nothing appended, output untouched.
  LatentCache<float> cache(a.latent_cache_config(4));
  Matrix<float> y3(3, 48);
  a.forward(x3, y3, cache, ws);
  Matrix<float> y7 = Matrix<float>::Constant(2, 48, 7.0f);
  try {
    a.forward(x3.topRows(2), y7, cache, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::capacity);
    EXPECT_STREQ(e.what(), "eigenformer: MultiHeadLatentAttention 'model.layers.0.self_attn': the LatentCache holds "
                           "3 of 4 tokens and cannot take 2 more");
  }
  EXPECT_EQ(cache.size(), 3);
  EXPECT_TRUE((y7.array() == 7.0f).all());
  // Caches of another shape.
  LatentCache<float> wrong({32, 8, 8});
  try {
    a.forward(x3, y3, wrong, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("kv_lora_rank = 32 and qk_rope_head_dim = 8, the layer 24 and 8"),
              std::string::npos);
  }
  KVCache<float> mha_shaped({4, 16, 16, 8});
  EXPECT_THROW(a.forward(x3, y3, mha_shaped, ws), Error);
  KVCache<float> full_kv(a.expanded_cache_config(2));
  try {
    a.forward(x3, y3, full_kv, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::capacity);
  }
  EXPECT_EQ(full_kv.size(), 0);
  // A default-constructed layer says so instead of crashing.
  const MultiHeadLatentAttention empty;
  EXPECT_THROW(empty.forward(x3, y3, ws), Error);
  // Empty input: nothing happens.
  Matrix<float> x0(0, 48), y0(0, 48);
  a.forward(x0, y0, ws);
  a.forward(x0, y0, cache, ws);
  EXPECT_EQ(cache.size(), 3);
}

}  // namespace
