// MultiHeadAttention: every form (prefill, cached decode, packed batch, cross) against a double-
// precision reference built from plain projections + RoPE in double + the reference attention, and
// the forms against each other (decode step by step == prefill).
#include <eigenformer/attention/multi_head_attention.hpp>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefMatrix;

namespace {

using eftest::random_matrix;

// A layer with random weights (and biases/sinks when configured).
MultiHeadAttention make_layer(const AttentionConfig& cfg, std::mt19937& g) {
  MultiHeadAttention a(cfg, "model.layers.0.self_attn");
  for (Linear<float>* l : {&a.q_proj(), &a.k_proj(), &a.v_proj(), &a.o_proj()}) {
    l->weight() = random_matrix<float>(l->out_features(), l->in_features(), g, 0.3);
    if (l->has_bias()) l->bias() = random_matrix<float>(l->out_features(), 1, g, 0.3);
  }
  if (cfg.sinks) a.sinks() = random_matrix<float>(cfg.num_attention_heads, 1, g, 1.0);
  return a;
}

RefMatrix linear_d(const RefMatrix& x, const Linear<float>& l) {
  RefMatrix y = x * l.weight().cast<double>().transpose();
  if (l.has_bias()) y.rowwise() += l.bias().cast<double>().transpose();
  return y;
}

// The whole layer in double: projections, RoPE (double), reference attention, o_proj.
RefMatrix reference_layer(const MultiHeadAttention& a, const Matrix<float>& x, const std::vector<long>& rope_pos,
                          const std::vector<bool>& key_valid = {}, const Matrix<float>* memory = nullptr) {
  const AttentionConfig& c = a.config();
  const RefMatrix xd = x.cast<double>();
  const RefMatrix md = memory ? RefMatrix(memory->cast<double>()) : xd;
  Matrix<double> q = linear_d(xd, a.q_proj()), k = linear_d(md, a.k_proj()), v = linear_d(md, a.v_proj());
  if (c.position == PositionEncoding::rope && !memory) {
    RotaryEmbedding rope(c.rope);
    std::vector<std::int64_t> p(rope_pos.begin(), rope_pos.end());
    rope.apply<double>(q, c.num_attention_heads, p.data());
    rope.apply<double>(k, c.num_key_value_heads, p.data());
  }
  eftest::RefAttentionOptions o;
  o.scale = c.scale;
  o.causal = memory ? false : c.causal;
  o.sliding_window = memory ? 0 : c.sliding_window;
  o.softcap = c.softcap;
  if (c.position == PositionEncoding::alibi && !memory) {
    for (double s : alibi_slopes(c.num_attention_heads)) o.alibi_slopes.push_back(static_cast<float>(s));
  }
  if (c.sinks) {
    Matrix<float> s = const_cast<MultiHeadAttention&>(a).sinks();
    for (Index h = 0; h < s.size(); ++h) o.sinks.push_back(s.data()[h]);
  }
  o.key_valid = key_valid;
  const RefMatrix att = eftest::reference_attention(q, k, v, eftest::iota_positions(q.rows()),
                                                    eftest::iota_positions(k.rows()), c.num_attention_heads,
                                                    c.num_key_value_heads, o);
  return linear_d(att, a.o_proj());
}

AttentionConfig base_config() {
  AttentionConfig c;
  c.hidden_size = 48;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rope.theta = 10000;
  return c;
}

using eftest::max_abs_diff;

// Float layer vs double reference: projections and attention in float, values O(1).
constexpr double kLayerTol = 2e-4;

struct Variant {
  const char* name;
  void (*edit)(AttentionConfig&);
};

const Variant kVariants[] = {
    {"gqa_rope", [](AttentionConfig&) {}},
    {"mha", [](AttentionConfig& c) { c.num_key_value_heads = 4; }},
    {"mqa", [](AttentionConfig& c) { c.num_key_value_heads = 1; }},
    {"head_dim_not_hidden_over_heads_with_biases",
     [](AttentionConfig& c) {
       c.head_dim = 16;
       c.qkv_bias = c.o_bias = true;
     }},
    {"interleaved_partial_rope",
     [](AttentionConfig& c) {
       c.rope.layout = RopeLayout::interleaved;
       c.rope.rotary_dim = 6;
     }},
    {"rope_linear_scaling",
     [](AttentionConfig& c) {
       c.rope.scaling.type = RopeType::linear;
       c.rope.scaling.factor = 4;
     }},
    {"sliding_window", [](AttentionConfig& c) { c.sliding_window = 5; }},
    {"softcap_and_custom_scale",
     [](AttentionConfig& c) {
       c.softcap = 2.0;
       c.scale = 0.4;
     }},
    {"sinks", [](AttentionConfig& c) { c.sinks = true; }},
    {"alibi", [](AttentionConfig& c) { c.position = PositionEncoding::alibi; }},
    {"no_positions_bidirectional",
     [](AttentionConfig& c) {
       c.position = PositionEncoding::none;
       c.causal = false;
     }},
};

class AttentionLayerVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(AttentionLayerVariants, PrefillMatchesReference) {
  auto g = eftest::rng(800);
  AttentionConfig cfg = base_config();
  GetParam().edit(cfg);
  MultiHeadAttention a = make_layer(cfg, g);
  Workspace<float> ws;
  for (Index T : {1, 9, 40}) {
    Matrix<float> x = random_matrix<float>(T, 48, g), y(T, 48);
    a.forward(x, y, ws);
    EXPECT_LT(max_abs_diff(y, reference_layer(a, x, eftest::iota_positions(T))), kLayerTol) << "T=" << T;
  }
}

TEST_P(AttentionLayerVariants, DecodeStepByStepEqualsPrefill) {
  auto g = eftest::rng(801);
  AttentionConfig cfg = base_config();
  GetParam().edit(cfg);
  if (!cfg.causal) GTEST_SKIP() << "bidirectional attention has no incremental form";
  MultiHeadAttention a = make_layer(cfg, g);
  const Index T = 23;
  Matrix<float> x = random_matrix<float>(T, 48, g), full(T, 48), step(T, 48);
  Workspace<float> ws;
  a.forward(x, full, ws);
  // Prompt of 7 tokens, then 1, 3, then one at a time.
  KVCache<float> cache({cfg.num_key_value_heads, a.config().head_dim, 0, 64});
  Index t = 0;
  for (Index n : {7, 1, 3}) {
    a.forward(x.middleRows(t, n), step.middleRows(t, n), cache, ws);
    t += n;
  }
  for (; t < T; ++t) a.forward(x.middleRows(t, 1), step.middleRows(t, 1), cache, ws);
  EXPECT_EQ(cache.size(), T);
  // Same math, different tiling/summation order (decode path vs packed prefill path).
  EXPECT_LT((step - full).cwiseAbs().maxCoeff(), 2e-5) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(All, AttentionLayerVariants, ::testing::ValuesIn(kVariants),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(AttentionLayer, PaddingMaskAndPositionIds) {
  auto g = eftest::rng(802);
  MultiHeadAttention a = make_layer(base_config(), g);
  const Index T = 12;
  Matrix<float> x = random_matrix<float>(T, 48, g), y(T, 48);
  std::vector<std::uint8_t> mask(T, 1);
  std::vector<bool> valid(T, true);
  for (Index j : {0, 1, 2}) mask[j] = 0, valid[j] = false;  // left padding
  std::vector<std::int64_t> pos(T);
  std::vector<long> posl(T);
  for (Index i = 0; i < T; ++i) pos[i] = posl[i] = std::max<Index>(0, i - 3);  // HF position_ids for left padding
  Workspace<float> ws;
  a.forward(x, y, ws, pos.data(), mask.data());
  const RefMatrix ref = reference_layer(a, x, posl, valid);
  EXPECT_LT(max_abs_diff(y, ref), kLayerTol);
  // Rows of padded queries see no key: output is the o_proj bias (0 here), not NaN.
  EXPECT_FALSE(y.array().isNaN().any());
}

TEST(AttentionLayer, HalfAndBf16CachesStayClose) {
  auto g = eftest::rng(803);
  AttentionConfig cfg = base_config();
  MultiHeadAttention a = make_layer(cfg, g);
  const Index T = 30;
  Matrix<float> x = random_matrix<float>(T, 48, g), full(T, 48), h(T, 48), b(T, 48);
  Workspace<float> ws;
  a.forward(x, full, ws);
  KVCache<f16> ch({2, 12, 0, 64});
  KVCache<bf16> cb({2, 12, 0, 64});
  for (Index t = 0; t < T; ++t) {
    a.forward(x.middleRows(t, 1), h.middleRows(t, 1), ch, ws);
    a.forward(x.middleRows(t, 1), b.middleRows(t, 1), cb, ws);
  }
  // Documented accuracy: f16 rounds K/V to 11 significant bits (2^-11 relative), bf16 to 8 (2^-8);
  // outputs are weighted sums of O(1) values through o_proj: errors of a few times that.
  const double scale = full.cwiseAbs().maxCoeff();
  EXPECT_LT((h - full).cwiseAbs().maxCoeff(), 4 * std::ldexp(1.0, -11) * scale);
  EXPECT_LT((b - full).cwiseAbs().maxCoeff(), 4 * std::ldexp(1.0, -8) * scale);
}

TEST(AttentionLayer, SlidingWindowCacheWithEvictionEqualsPrefill) {
  auto g = eftest::rng(804);
  AttentionConfig cfg = base_config();
  cfg.sliding_window = 6;
  MultiHeadAttention a = make_layer(cfg, g);
  const Index T = 40;
  Matrix<float> x = random_matrix<float>(T, 48, g), full(T, 48), step(T, 48);
  Workspace<float> ws;
  a.forward(x, full, ws);
  // Capacity = window: the ring evicts everything the window no longer needs.
  KVCache<float> cache({2, 12, 0, 6, CacheEviction::sliding_window});
  Index t = 0;
  for (Index n : {4, 1, 1, 9}) {  // a prompt longer than the window among them
    a.forward(x.middleRows(t, n), step.middleRows(t, n), cache, ws);
    t += n;
  }
  for (; t < T; ++t) a.forward(x.middleRows(t, 1), step.middleRows(t, 1), cache, ws);
  EXPECT_EQ(cache.size(), 6);
  EXPECT_LT((step - full).cwiseAbs().maxCoeff(), 2e-5);
}

TEST(AttentionLayer, PackedSequencesEqualSeparateCalls) {
  auto g = eftest::rng(805);
  MultiHeadAttention a = make_layer(base_config(), g);
  const std::vector<Index> offsets = {0, 5, 5, 17, 18, 40};
  Matrix<float> x = random_matrix<float>(40, 48, g), packed(40, 48), sep(40, 48);
  Workspace<float> ws;
  a.forward_packed(x, offsets.data(), 5, packed, ws);
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
    const Index a0 = offsets[s], len = offsets[s + 1] - a0;
    a.forward(x.middleRows(a0, len), sep.middleRows(a0, len), ws);
  }
  EXPECT_EQ(packed, sep);
  const std::vector<Index> bad = {0, 10, 5, 40};
  EXPECT_THROW(a.forward_packed(x, bad.data(), 3, packed, ws), Error);
}

TEST(AttentionLayer, CrossAttentionMatchesReference) {
  auto g = eftest::rng(806);
  AttentionConfig cfg = base_config();
  cfg.position = PositionEncoding::none;
  MultiHeadAttention a = make_layer(cfg, g);
  Matrix<float> x = random_matrix<float>(7, 48, g), mem = random_matrix<float>(19, 48, g), y(7, 48);
  Workspace<float> ws;
  a.forward_cross(x, mem, y, ws);
  EXPECT_LT(max_abs_diff(y, reference_layer(a, x, {}, {}, &mem)), kLayerTol);
}

TEST(AttentionLayer, LoadsLlamaNamesAndSinks) {
  auto g = eftest::rng(807);
  AttentionConfig cfg = base_config();
  cfg.sinks = true;
  cfg.qkv_bias = true;
  MultiHeadAttention src = make_layer(cfg, g);
  SafeTensorsWriter w;
  const std::string p = "model.layers.3.self_attn.";
  w.add(p + "q_proj.weight", src.q_proj().weight());
  w.add(p + "q_proj.bias", src.q_proj().bias());
  w.add(p + "k_proj.weight", src.k_proj().weight());
  w.add(p + "k_proj.bias", src.k_proj().bias());
  w.add(p + "v_proj.weight", src.v_proj().weight());
  w.add(p + "v_proj.bias", src.v_proj().bias());
  w.add(p + "o_proj.weight", src.o_proj().weight());
  w.add(p + "sinks", src.sinks());
  const SafeTensors st = SafeTensors::from_bytes(w.to_bytes());
  MultiHeadAttention a = MultiHeadAttention::load(st, "model.layers.3.self_attn", cfg);
  Matrix<float> x = random_matrix<float>(9, 48, g), y1(9, 48), y2(9, 48);
  Workspace<float> ws;
  src.forward(x, y1, ws);
  a.forward(x, y2, ws);
  EXPECT_EQ(y1, y2);
  AttentionConfig wrong = cfg;
  wrong.num_key_value_heads = 4;  // k_proj would be [48, 48], the file has [24, 48]
  EXPECT_THROW(MultiHeadAttention::load(st, "model.layers.3.self_attn", wrong), Error);
}

TEST(AttentionLayer, ConfigShapeAndCacheErrors) {
  auto g = eftest::rng(808);
  AttentionConfig bad = base_config();
  bad.num_key_value_heads = 3;
  EXPECT_THROW(MultiHeadAttention{bad}, Error);
  bad = base_config();
  bad.hidden_size = 50;  // not divisible by 4 heads, no head_dim
  EXPECT_THROW(MultiHeadAttention{bad}, Error);
  MultiHeadAttention a = make_layer(base_config(), g);
  Workspace<float> ws;
  Matrix<float> x(3, 47), y(3, 48);
  try {
    a.forward(x, y, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "eigenformer: MultiHeadAttention 'model.layers.0.self_attn': input x has shape [3, 47], expected [*, 48]");
  }
  // A full cache: clear error, nothing appended, output untouched.
  KVCache<float> cache({2, 12, 0, 4});
  Matrix<float> x3 = random_matrix<float>(3, 48, g), y3(3, 48);
  a.forward(x3, y3, cache, ws);
  Matrix<float> y2 = Matrix<float>::Constant(2, 48, 7.0f);
  try {
    a.forward(x3.topRows(2), y2, cache, ws);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::capacity);
  }
  EXPECT_EQ(cache.size(), 3);
  EXPECT_TRUE((y2.array() == 7.0f).all());
  KVCache<float> wrong({4, 12, 0, 8});
  EXPECT_THROW(a.forward(x3, y3, wrong, ws), Error);
}

}  // namespace
