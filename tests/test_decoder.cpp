// Decoder (model/decoder.hpp), its JSON configuration and generation (model/generate.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <eigenformer/model/decoder.hpp>
#include <eigenformer/model/decoder_config.hpp>
#include <eigenformer/model/generate.hpp>

#include "test_util.hpp"

namespace {

using namespace eigenformer;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class F>
void expect_error(F f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error, expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Every mixer kind, a sliding window shorter than the test sequences, GQA, MLA without q_lora.
const char* kMixedConfig = R"({
  "vocab_size": 61, "hidden_size": 32, "rms_norm_eps": 1e-5,
  "layers": [
    {"mixer": "attention", "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48},
    {"mixer": "attention", "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
     "sliding_window": 5, "intermediate_size": 48, "hidden_act": "gelu_pytorch_tanh"},
    {"mixer": "mla", "num_attention_heads": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
     "v_head_dim": 8, "intermediate_size": 40},
    {"mixer": "retention", "num_heads": 2, "value_dim": 64, "intermediate_size": 48, "mlp_gated": false},
    {"mixer": "gated_retention", "num_heads": 2, "intermediate_size": 48, "repeat": 2},
    {"mixer": "attention", "num_attention_heads": 4, "dilated": [[4, 1], [8, 2]], "intermediate_size": 32},
    {"mixer": "attention", "num_attention_heads": 2, "ffn": "kan", "kan_grid_size": 4, "intermediate_size": 16}
  ]
})";

Decoder mixed_model(std::uint32_t seed) {
  Decoder d(decoder_config_from_json(kMixedConfig));
  d.randomize(seed);
  return d;
}

std::vector<std::int32_t> tokens(Index n, std::uint32_t salt) {
  auto g = eftest::rng(salt);
  std::uniform_int_distribution<int> u(0, 60);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = u(g);
  return t;
}

Matrix<float> prefill_logits(const Decoder& d, const std::vector<std::int32_t>& ids) {
  Workspace<float> ws;
  auto st = d.make_state(static_cast<Index>(ids.size()));
  Matrix<float> logits(static_cast<Index>(ids.size()), d.config().vocab_size);
  d.forward(ids.data(), static_cast<Index>(ids.size()), logits, st, ws);
  return logits;
}

TEST(DecoderConfig, ParsesEveryMixer) {
  const DecoderConfig c = decoder_config_from_json(kMixedConfig);
  ASSERT_EQ(c.layers.size(), 8u);
  EXPECT_TRUE(c.layers[7].kan_ffn);
  EXPECT_EQ(c.layers[7].kan.bspline.grid_size, 4);
  ASSERT_EQ(c.layers[6].attention.dilated.size(), 2u);
  EXPECT_EQ(c.layers[6].attention.dilated[1].segment, 8);
  EXPECT_EQ(c.layers[6].attention.dilated[1].dilation, 2);
  EXPECT_EQ(c.vocab_size, 61);
  EXPECT_EQ(c.layers[0].mixer, MixerKind::attention);
  EXPECT_EQ(c.layers[0].attention.num_key_value_heads, 2);
  EXPECT_EQ(c.layers[1].attention.sliding_window, 5);
  EXPECT_EQ(c.layers[1].mlp.act, Activation::gelu_tanh);
  EXPECT_EQ(c.layers[2].mixer, MixerKind::mla);
  EXPECT_EQ(c.layers[2].mla.kv_lora_rank, 16);
  EXPECT_EQ(c.layers[3].mixer, MixerKind::retention);
  EXPECT_FALSE(c.layers[3].mlp.gated);
  EXPECT_EQ(c.layers[5].mixer, MixerKind::gated_retention);
  const Decoder d(c);
  EXPECT_EQ(d.num_layers(), 8);
}

TEST(DecoderConfig, Errors) {
  auto parse = [](const std::string& s) { return [s] { decoder_config_from_json(s); }; };
  const std::string head = R"({"vocab_size": 8, "hidden_size": 8, "layers": [)";
  expect_error(parse("[1]"), ErrorKind::config, "must be an object");
  expect_error(parse(R"({"vocab_size": 8, "hidden_size": 8})"), ErrorKind::config, "'layers' must be a non-empty");
  expect_error(parse(R"({"vocab_size": 8, "hidden_size": 8, "layers": [], "x": 1})"), ErrorKind::config,
               "unknown key 'x'");
  expect_error(parse(head + R"({"mixer": "lstm", "intermediate_size": 8}]})"), ErrorKind::config,
               "layers[0]: unknown mixer 'lstm'");
  expect_error(parse(head + R"({"mixer": "attention", "intermediate_size": 8}]})"), ErrorKind::config,
               "layers[0]: missing key 'num_attention_heads'");
  expect_error(parse(head + R"({"mixer": "attention", "num_attention_heads": 2.5, "intermediate_size": 8}]})"),
               ErrorKind::config, "'num_attention_heads' must be an integer");
  expect_error(parse(head + R"({"mixer": "retention", "num_heads": 2, "intermediate_size": 8, "heads": 2}]})"),
               ErrorKind::config, "unknown key 'heads'");
  expect_error(parse(head + R"({"mixer": "retention", "num_heads": "2", "intermediate_size": 8}]})"),
               ErrorKind::config, "'num_heads' must be a number");
  expect_error(parse(head + R"({"mixer": "retention", "num_heads": 2, "intermediate_size": 0}]})"),
               ErrorKind::config, "'intermediate_size' = 0 must be >= 1");
  expect_error(parse(R"({"vocab_size": 8, "hidden_size": 8, "layers": [)"), ErrorKind::config, "invalid JSON");
  expect_error(parse(head + R"({"mixer": "attention", "num_attention_heads": 2, "intermediate_size": 8,
                              "dilated": [[4, 0]]}]})"),
               ErrorKind::config, "'dilated' entries must be");
  // a layer the layers themselves reject: 3 heads do not divide 8
  expect_error([&] { Decoder d(decoder_config_from_json(head + R"({"mixer": "attention", "num_attention_heads": 3,
                       "intermediate_size": 8}]})")); },
               ErrorKind::config, "3");
}

// A one-block attention decoder written plainly in double: embedding, RMSNorm, causal GQA attention
// with rotate-half RoPE (theta 10000), residual, RMSNorm, SwiGLU, residual, RMSNorm, lm_head.
TEST(Decoder, MatchesANaiveDoubleReference) {
  const char* cfg = R"({"vocab_size": 23, "hidden_size": 16, "rms_norm_eps": 1e-5, "layers": [
    {"mixer": "attention", "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 24}]})";
  Decoder d(decoder_config_from_json(cfg));
  d.randomize(11);
  auto ids = tokens(9, 12);
  for (auto& t : ids) t %= 23;
  const Index T = 9, D = 16, H = 4, Hkv = 2, hd = 4, I = 24;
  auto W = [](const Linear<float>& l) { return MatD(l.weight().cast<double>()); };
  const Decoder::Block& b = d.block(0);
  const auto& att = std::get<MultiHeadAttention>(b.mixer);
  auto rms = [](const MatD& x) {
    MatD y = x;
    for (Index t = 0; t < x.rows(); ++t) y.row(t) /= std::sqrt(x.row(t).squaredNorm() / double(x.cols()) + 1e-5);
    return y;
  };
  auto rope = [&](MatD& m, Index heads) {
    for (Index t = 0; t < T; ++t)
      for (Index h = 0; h < heads; ++h)
        for (Index j = 0; j < hd / 2; ++j) {
          const double a = double(t) * std::pow(10000.0, -2.0 * double(j) / double(hd));
          double& x0 = m(t, h * hd + j);
          double& x1 = m(t, h * hd + j + hd / 2);
          const double r0 = x0 * std::cos(a) - x1 * std::sin(a), r1 = x1 * std::cos(a) + x0 * std::sin(a);
          x0 = r0;
          x1 = r1;
        }
  };
  MatD h(T, D);
  for (Index t = 0; t < T; ++t) h.row(t) = d.embed_tokens().weight().row(ids[std::size_t(t)]).cast<double>();
  MatD z = rms(h);
  MatD q = z * W(att.q_proj()).transpose(), k = z * W(att.k_proj()).transpose(), v = z * W(att.v_proj()).transpose();
  rope(q, H);
  rope(k, Hkv);
  MatD o = MatD::Zero(T, H * hd);
  for (Index hq = 0; hq < H; ++hq) {
    const Index kh = hq / (H / Hkv);
    for (Index t = 0; t < T; ++t) {
      std::vector<double> s;
      for (Index j = 0; j <= t; ++j) s.push_back(q.row(t).segment(hq * hd, hd).dot(k.row(j).segment(kh * hd, hd)) / 2.0);
      const double mx = *std::max_element(s.begin(), s.end());
      double den = 0;
      for (auto& e : s) den += e = std::exp(e - mx);
      for (Index j = 0; j <= t; ++j) o.block(t, hq * hd, 1, hd) += s[std::size_t(j)] / den * v.block(j, kh * hd, 1, hd);
    }
  }
  h += o * W(att.o_proj()).transpose();
  z = rms(h);
  MatD g = z * W(b.mlp.gate()).transpose(), u = z * W(b.mlp.up()).transpose();
  for (Index i = 0; i < g.size(); ++i) g.data()[i] = g.data()[i] / (1 + std::exp(-g.data()[i])) * u.data()[i];
  ASSERT_EQ(g.cols(), I);
  h += g * W(b.mlp.down()).transpose();
  const MatD want = rms(h) * W(d.lm_head()).transpose();
  const MatD got = prefill_logits(d, ids).cast<double>();
  EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 1e-4 * want.cwiseAbs().maxCoeff());
}

// Prefill == token-by-token decode == prefill in uneven parts, through every mixer kind.
TEST(Decoder, DecodeEqualsPrefillForEveryMixer) {
  const Decoder d = mixed_model(21);
  const auto ids = tokens(14, 22);
  const Index T = 14, V = 61;
  const Matrix<float> full = prefill_logits(d, ids);
  const float scale = full.cwiseAbs().maxCoeff();
  Workspace<float> ws;
  for (Index split : {Index(1), Index(4), Index(9)}) {
    auto st = d.make_state(T);
    Matrix<float> y(T, V);
    d.forward(ids.data(), split, y.topRows(split), st, ws);
    for (Index t = split; t < T;) {
      const Index n = std::min<Index>(t % 2 ? 1 : 3, T - t);
      d.forward(ids.data() + t, n, y.middleRows(t, n), st, ws);
      t += n;
    }
    EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 1e-4f * scale) << split;
    EXPECT_EQ(st.position, T);
  }
  // last-row logits only
  auto st = d.make_state(T);
  Matrix<float> last(1, V);
  d.forward(ids.data(), T, last, st, ws);
  EXPECT_LT((last - full.bottomRows(1)).cwiseAbs().maxCoeff(), 1e-5f * scale);
}

// The issue's shape: a 4-layer, width-1024 GQA decoder, prompt then single tokens == one prefill
// (in the unoptimized sanitizer build: 2 layers of width 512, still wide enough for the products
// to be split across threads).
TEST(Decoder, WideGqaDecodeEqualsPrefill) {
  const std::string cfg = eftest::kSlowBuild
                              ? R"({"vocab_size": 97, "hidden_size": 512, "layers": [
    {"mixer": "attention", "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 768, "repeat": 2}]})"
                              : R"({"vocab_size": 97, "hidden_size": 1024, "layers": [
    {"mixer": "attention", "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 1536,
     "repeat": 4}]})";
  Decoder d(decoder_config_from_json(cfg));
  d.randomize(61);
  const auto ids = tokens(10, 62);
  const Matrix<float> full = prefill_logits(d, ids);
  Workspace<float> ws;
  auto st = d.make_state(10);
  Matrix<float> y(10, 97);
  d.forward(ids.data(), 4, y.topRows(4), st, ws);
  for (Index t = 4; t < 10; ++t) d.forward(ids.data() + t, 1, y.middleRows(t, 1), st, ws);
  EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 1e-4f * full.cwiseAbs().maxCoeff());
}

TEST(Decoder, SaveLoadRoundTripAndNames) {
  {
    SafeTensorsWriter w;
    expect_error([&] { mixed_model(30).save(w); }, ErrorKind::invalid_argument, "KAN FFN");
  }
  DecoderConfig cfg = decoder_config_from_json(kMixedConfig);
  cfg.layers.pop_back();  // the KAN FFN block
  Decoder d(cfg);
  d.randomize(31);
  SafeTensorsWriter w;
  d.save(w);
  const SafeTensors st = SafeTensors::from_bytes(w.to_bytes());
  for (const char* n : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                        "model.layers.0.mlp.gate_proj.weight", "model.layers.2.self_attn.kv_a_proj_with_mqa.weight",
                        "model.layers.2.self_attn.kv_a_layernorm.weight", "model.layers.3.self_attn.g_proj.weight",
                        "model.layers.5.self_attn.gt_proj.weight", "model.layers.5.post_attention_layernorm.weight",
                        "model.norm.weight", "lm_head.weight"})
    EXPECT_TRUE(st.contains(n)) << n;
  EXPECT_FALSE(st.contains("model.layers.3.mlp.gate_proj.weight"));  // mlp_gated false
  const Decoder l = Decoder::load(st, d.config());
  EXPECT_EQ(l.parameters(), d.parameters());
  const auto ids = tokens(7, 32);
  EXPECT_TRUE(prefill_logits(l, ids) == prefill_logits(d, ids));
  // tied embeddings: no lm_head, logits = norm(h) E^T
  DecoderConfig c = d.config();
  c.tie_word_embeddings = true;
  const Decoder tied = Decoder::load(st, c);
  EXPECT_EQ(tied.parameters(), d.parameters() - 61 * 32);
  // a KAN FFN block loads from efficient-kan names under mlp.layers.{0,1}
  DecoderConfig kc = decoder_config_from_json(R"({"vocab_size": 61, "hidden_size": 32, "layers": [
      {"mixer": "attention", "num_attention_heads": 2, "ffn": "kan", "intermediate_size": 8}]})");
  EXPECT_THROW(Decoder::load(st, kc), Error);  // no model.layers.0.mlp.layers.0.* in this file
}

TEST(Decoder, StateBytesAndErrors) {
  const Decoder d = mixed_model(41);
  auto st = d.make_state(100);
  const auto st2 = d.make_state(200);
  // attention (block 0) and MLA grow with the capacity; the sliding window and retention do not
  const std::size_t grow = st2.bytes() - st.bytes();
  EXPECT_EQ(grow, 100u * (2u * 2u * 8u + 16u + 4u + 2u * 4u * 8u + 2u * 2u * 16u) * sizeof(float));
  Workspace<float> ws;
  const auto ids = tokens(101, 42);
  Matrix<float> y(101, 61), bad(3, 60);
  expect_error([&] { d.forward(ids.data(), 101, y, st, ws); }, ErrorKind::capacity, "state holds 100 tokens");
  EXPECT_EQ(st.position, 0);
  expect_error([&] { d.forward(ids.data(), 3, bad, st, ws); }, ErrorKind::shape_mismatch,
               "logits have shape [3, 60], expected [3, 61] or [1, 61]");
  auto bad_ids = ids;
  bad_ids[1] = 61;
  expect_error([&] { d.forward(bad_ids.data(), 3, y.topRows(3), st, ws); }, ErrorKind::invalid_argument, "61");
  DecoderState other = Decoder(decoder_config_from_json(R"({"vocab_size": 61, "hidden_size": 32, "layers": [
      {"mixer": "retention", "num_heads": 2, "intermediate_size": 8, "repeat": 8}]})")).make_state(10);
  expect_error([&] { d.forward(ids.data(), 1, y.topRows(1), other, ws); }, ErrorKind::shape_mismatch,
               "a block's state is a RetentionState, its mixer needs a KVCache");
  expect_error([&] { d.make_state(0); }, ErrorKind::invalid_argument, "capacity = 0");
}

TEST(Generate, GreedySamplingAndBeams) {
  const Decoder d = mixed_model(51);
  const std::vector<std::int32_t> prompt = {3, 14, 15, 9};
  Workspace<float> ws;
  const Index N = 8, V = 61;
  // greedy == argmax of the logits of the growing sequence, recomputed by prefills
  auto st = d.make_state(16);
  std::vector<std::int32_t> streamed;
  const auto greedy = generate(d, prompt, N, SamplingOptions{}, st, ws, [&](std::int32_t t) {
    streamed.push_back(t);
    return true;
  });
  ASSERT_EQ(greedy.size(), std::size_t(N));
  EXPECT_EQ(streamed, greedy);
  std::vector<std::int32_t> seq = prompt;
  for (Index t = 0; t < N; ++t) {
    const Matrix<float> l = prefill_logits(d, seq);
    const auto want = Sampler::argmax(l.row(l.rows() - 1).data(), V);
    EXPECT_EQ(greedy[std::size_t(t)], want) << t;
    seq.push_back(want);
  }
  // top_k = 1 and a tiny top_p are greedy whatever the temperature; a seed repeats itself
  auto run = [&](SamplingOptions o) {
    auto s = d.make_state(16);
    return generate(d, prompt, N, o, s, ws);
  };
  EXPECT_EQ(run({1.5, 1, 1.0, 7}), greedy);
  EXPECT_EQ(run({1.5, 0, 1e-9, 7}), greedy);
  const auto a = run({1.0, 20, 0.9, 1234}), b = run({1.0, 20, 0.9, 1234}), c = run({1.0, 0, 1.0, 99});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // different seeds and settings (a fixed outcome for these seeds)
  // the callback stops generation; eos stops it
  auto s2 = d.make_state(16);
  EXPECT_EQ(generate(d, prompt, N, SamplingOptions{}, s2, ws, [](std::int32_t) { return false; }).size(), 1u);
  SamplingOptions eos;
  eos.eos_id = greedy[2];
  EXPECT_EQ(run(eos), std::vector<std::int32_t>(greedy.begin(), greedy.begin() + 3));
  // one beam is greedy; beams are sorted and their scores are the log-probabilities of their tokens
  EXPECT_EQ(beam_search(d, prompt, 1, N, d.make_state(16), ws)[0].tokens, greedy);
  const auto beams = beam_search(d, prompt, 3, 5, d.make_state(16), ws);
  ASSERT_EQ(beams.size(), 3u);
  for (std::size_t i = 0; i < beams.size(); ++i) {
    ASSERT_EQ(beams[i].tokens.size(), 5u);
    if (i > 0) {
      EXPECT_GE(beams[i - 1].score, beams[i].score);
    }
    std::vector<std::int32_t> full = prompt;
    full.insert(full.end(), beams[i].tokens.begin(), beams[i].tokens.end());
    const Matrix<float> l = prefill_logits(d, full);
    double score = 0;
    for (std::size_t t = 0; t < 5; ++t) {
      const Index row = static_cast<Index>(prompt.size() + t) - 1;
      const Eigen::VectorXd r = l.row(row).cast<double>().transpose();
      const double lse = r.maxCoeff() + std::log((r.array() - r.maxCoeff()).exp().sum());
      score += r(beams[i].tokens[t]) - lse;
    }
    EXPECT_NEAR(beams[i].score, score, 1e-3) << i;
  }
  EXPECT_GE(beams[0].score, beams[2].score);
  expect_error([&] { Sampler s({-1.0, 0, 1.0, 0}); }, ErrorKind::config, "temperature = -1");
  expect_error([&] { Sampler s({1.0, 0, 0.0, 0}); }, ErrorKind::config, "top_p = 0");
  expect_error([&] { auto s = d.make_state(4); generate(d, {}, 2, {}, s, ws); }, ErrorKind::invalid_argument,
               "prompt is empty");
}

}  // namespace
