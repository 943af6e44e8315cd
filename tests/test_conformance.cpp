// Conformance: every golden case of tests/data/golden/run (written by tools/make_golden.py from the
// reference modules: torch.nn Linear / LayerNorm / Embedding, transformers LlamaMLP, T5 gated FFN,
// CLIPMLP, Llama/Gemma RMSNorm, Llama / Mistral / Gemma 2 / gpt-oss / StableLM / Bloom attention, prefill
// and decode, DeepSeek-V3 MLA prefill and decode, BitNet BitLinear / AutoBitLinear and decoder layer,
// torchscale MultiScaleRetention and RetNet decoder layer in the parallel / recurrent / chunkwise forms) runs through the library in-process (conformance::run_case) and through the
// eigenformer-run binary, and matches the reference output within the layer's stated tolerance; the
// binary's output file is byte-identical to the in-process one. Attention options without a golden
// case (xPos, interleaved RoPE, bidirectional ALiBi, streaming cache, ...) are checked against the
// library called directly. `eigenformer-run --list` and docs/conformance.md must agree.
// Malformed cases: test_conformance_errors.cpp.
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "conformance_test_util.hpp"

using namespace eigenformer;
using namespace eigenformer::conformance;
using namespace eftest;

namespace {

TEST(ConformanceGolden, EveryCaseInProcess) {
  const auto names = files_in(golden_run_dir());
  ASSERT_GE(names.size(), 30u) << "golden cases missing from " << golden_run_dir();
  std::set<std::string> seen;  // layer/mode
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const SafeTensors c = SafeTensors::open(golden_run_dir() + "/" + n + ".safetensors");
    std::vector<std::uint8_t> bytes;
    try {
      bytes = run_case(c).to_bytes();
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    const SafeTensors out = SafeTensors::from_bytes(bytes);
    const double ratio = expect_matches_expected(c, out);
    std::printf("[ case     ] %-48s %-10s %-8s max |diff| = %.3f of the bound\n", n.c_str(),
                out.metadata().at("layer").c_str(), out.metadata().at("mode").c_str(), ratio);
    seen.insert(out.metadata().at("layer") + "/" + out.metadata().at("mode"));
  }
  // Every registered layer and each of its modes has at least one golden case.
  for (const LayerSpec& L : registry().layers())
    for (const ModeSpec& m : L.modes())
      EXPECT_TRUE(seen.count(L.name() + "/" + m.name))
          << "layer " << L.name() << " mode " << m.name << " has no golden case in " << golden_run_dir()
          << " (add one to tools/make_golden.py)";
}

TEST(ConformanceGolden, EveryCaseThroughTheBinary) {
  if (!have_binary()) GTEST_SKIP() << "eigenformer-run is not built here (cross-compiled build)";
  const auto names = files_in(golden_run_dir());
  ASSERT_FALSE(names.empty());
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const std::string path = golden_run_dir() + "/" + n + ".safetensors";
    const std::string out = temp_path(n + ".out.safetensors");
    const Proc p = run_binary({path, out});
    EXPECT_EQ(p.code, 0) << p.err;
    EXPECT_TRUE(p.err.empty()) << p.err;
    if (p.code != 0) continue;
    const auto got = read_bytes(out);
    std::remove(out.c_str());
    const SafeTensors c = SafeTensors::open(path);
    EXPECT_TRUE(got == run_case(c).to_bytes()) << "the binary's output differs from the in-process run";
    expect_matches_expected(c, SafeTensors::from_bytes(got));
  }
}

// ------------------------------------------------------------------------------------------------
// Attention options without a golden case: the runner equals the library called directly.
// ------------------------------------------------------------------------------------------------

void put_matrix(CaseFile& c, const std::string& name, const Matrix<float>& m) {
  c.values(name, Dtype::F32, {m.rows(), m.cols()}, std::vector<float>(m.data(), m.data() + m.size()));
}

struct Synthetic {
  const char* what;
  std::vector<std::pair<std::string, std::string>> meta;  // beyond hidden_size 32, 4/2 heads
  AttentionConfig cfg;                                    // the same, for the library
  bool decode = false;
  bool mask = false;
  KVCache<float>::Config cache{};
};

std::vector<Synthetic> synthetic_cases() {
  std::vector<Synthetic> v;
  AttentionConfig base;
  base.hidden_size = 32;
  base.num_attention_heads = 4;
  base.num_key_value_heads = 2;
  {
    Synthetic s{"xpos", {{"position_encoding", "xpos"}, {"xpos_scale_base", "64.0"}}, base};
    s.cfg.position = PositionEncoding::xpos;
    s.cfg.xpos_scale_base = 64;
    v.push_back(s);
  }
  {
    Synthetic s{"interleaved partial rope", {{"rope_interleave", "true"}, {"partial_rotary_factor", "0.5"}, {"rope_theta", "500.0"}}, base};
    s.cfg.rope.layout = RopeLayout::interleaved;
    s.cfg.rope.rotary_dim = 4;
    s.cfg.rope.theta = 500;
    v.push_back(s);
  }
  {
    Synthetic s{"bidirectional symmetric alibi, padding",
                {{"is_causal", "false"}, {"position_encoding", "alibi"}, {"alibi_form", "symmetric"}}, base};
    s.cfg.causal = false;
    s.cfg.position = PositionEncoding::alibi;
    s.cfg.alibi_form = AlibiForm::symmetric;
    s.mask = true;
    v.push_back(s);
  }
  {
    Synthetic s{"no positions, window, soft-cap, scale",
                {{"position_encoding", "none"}, {"sliding_window", "3"}, {"attn_logit_softcapping", "5.0"},
                 {"query_pre_attn_scalar", "16.0"}},
                base};
    s.cfg.position = PositionEncoding::none;
    s.cfg.sliding_window = 3;
    s.cfg.softcap = 5;
    s.cfg.scale = 0.25;
    v.push_back(s);
  }
  {
    Synthetic s{"decode, streaming cache with sinks",
                {{"mode", "decode"}, {"cache_eviction", "streaming"}, {"cache_capacity", "6"},
                 {"cache_sink_tokens", "2"}, {"prompt_length", "3"}},
                base};
    s.decode = true;
    s.cache = {2, 8, 0, 6, CacheEviction::streaming, 2};
    v.push_back(s);
  }
  return v;
}

TEST(ConformanceAttention, OptionsWithoutGoldenCasesMatchTheLibrary) {
  auto g = rng(41);
  const Index T = 11;
  for (const Synthetic& s : synthetic_cases()) {
    SCOPED_TRACE(s.what);
    MultiHeadAttention m(s.cfg);
    for (Linear<float>* l : {&m.q_proj(), &m.k_proj(), &m.v_proj(), &m.o_proj()})
      l->weight() = random_matrix<float>(l->out_features(), l->in_features(), g, 0.3);
    const Matrix<float> x = random_matrix<float>(T, 32, g);
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(T), 1);
    mask[0] = mask[7] = 0;

    CaseFile c;
    c.set("layer", "attention").set("hidden_size", "32").set("num_attention_heads", "4").set("num_key_value_heads", "2");
    for (const auto& kv : s.meta) c.set(kv.first, kv.second);
    put_matrix(c, "q_proj.weight", m.q_proj().weight());
    put_matrix(c, "k_proj.weight", m.k_proj().weight());
    put_matrix(c, "v_proj.weight", m.v_proj().weight());
    put_matrix(c, "o_proj.weight", m.o_proj().weight());
    put_matrix(c, "input.hidden_states", x);
    if (s.mask) c.values("input.attention_mask", Dtype::U8, {T}, mask);
    Matrix<float> got;
    try {
      const SafeTensors out = SafeTensors::from_bytes(run_case(c.parse()).to_bytes());
      got = out.matrix<float>("output.hidden_states", T, 32);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }

    Matrix<float> want(T, 32);
    Workspace<float> ws;
    if (s.decode) {
      KVCache<float> cache(s.cache);
      m.forward(x.topRows(3), want.topRows(3), cache, ws);
      for (Index t = 3; t < T; ++t) m.forward(x.middleRows(t, 1), want.middleRows(t, 1), cache, ws);
    } else {
      m.forward(x, want, ws, nullptr, s.mask ? mask.data() : nullptr);
    }
    EXPECT_EQ((got - want).cwiseAbs().maxCoeff(), 0.0f);
  }
}

// ------------------------------------------------------------------------------------------------
// The registry API: a new layer in a few lines
// ------------------------------------------------------------------------------------------------

TEST(ConformanceRegistry, ANewLayerRegistersWithOneDeclaration) {
  Registry reg;
  LayerSpec s("affine", "y = factor * x + shift (a test layer)");
  s.key(KeySpec::integer("width").required().min(1).doc("width"))
      .key(KeySpec::number("factor").default_value("2.0").doc("scale"))
      .weight("shift", {"width"})
      .input("hidden_states", {"T", "width"})
      .output("hidden_states", {"T", "width"})
      .implement([](const Config& c, Plan&) { return static_cast<float>(c.number("factor")); },
                 [](const Case& k, const float& factor, Outputs& out) {
                   Matrix<float> x = k.matrix("input.hidden_states") * factor;
                   x.rowwise() += k.vector("shift").transpose();
                   out.add("hidden_states", x);
                 });
  reg.add(s);
  EXPECT_THROW(reg.add(s), Error);  // registered twice

  CaseFile c;
  c.set("layer", "affine").set("width", "3").set("factor", "0.5");
  c.values("shift", Dtype::F32, {3}, std::vector<float>{1, 2, 3});
  c.values("input.hidden_states", Dtype::F64, {2, 3}, std::vector<double>{2, 4, 6, 8, 10, 12});
  const SafeTensors out = SafeTensors::from_bytes(run_case(c.parse(), reg).to_bytes());
  EXPECT_EQ(out.to_vector<float>("output.hidden_states"), (std::vector<float>{2, 4, 6, 5, 7, 9}));
  EXPECT_EQ(out.metadata().at("layer"), "affine");
  EXPECT_EQ(out.metadata().at("mode"), "forward");
  EXPECT_NE(list_markdown(reg).find("### `affine`"), std::string::npos);
  // The built-in layers are not in a separate registry.
  c.set("layer", "linear");
  try {
    run_case(c.parse(), reg);
    ADD_FAILURE() << "no error";
  } catch (const CaseError& e) {
    EXPECT_EQ(e.problem(), Problem::unknown_layer) << e.what();
  }
}

TEST(ConformanceRegistry, BuiltinLayers) {
  std::vector<std::string> want = {"linear",    "mlp", "rms_norm",   "layer_norm",   "embedding",   "attention",
                                   "mla",       "bit_linear", "bitnet_layer", "retention", "retnet_layer",
                                   "gated_retention", "yoco"};
  for (const std::string& n : want) EXPECT_NE(registry().find(n), nullptr) << n;
  const LayerSpec* a = registry().find("attention");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->modes().size(), 2u);
  EXPECT_EQ(a->modes()[0].name, "prefill");
  EXPECT_EQ(a->modes()[1].name, "decode");
  for (const char* n : {"retention", "retnet_layer"}) {
    const LayerSpec* l = registry().find(n);
    ASSERT_NE(l, nullptr);
    ASSERT_EQ(l->modes().size(), 3u);
    EXPECT_EQ(l->modes()[0].name, "parallel");
    EXPECT_EQ(l->modes()[1].name, "recurrent");
    EXPECT_EQ(l->modes()[2].name, "chunkwise");
  }
  const LayerSpec* g = registry().find("gated_retention");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(g->modes().size(), 2u);
  EXPECT_EQ(g->modes()[0].name, "chunkwise");
  EXPECT_EQ(g->modes()[1].name, "recurrent");
  const LayerSpec* y = registry().find("yoco");
  ASSERT_NE(y, nullptr);
  ASSERT_EQ(y->modes().size(), 2u);
  EXPECT_EQ(y->modes()[0].name, "prefill");
  EXPECT_EQ(y->modes()[1].name, "decode");
}

// ------------------------------------------------------------------------------------------------
// --list and docs/conformance.md
// ------------------------------------------------------------------------------------------------

const char* kBegin = "<!-- BEGIN GENERATED: eigenformer-run --list -->\n";
const char* kEnd = "<!-- END GENERATED -->";

TEST(ConformanceList, DocsAgreeWithTheRegistry) {
#ifndef EIGENFORMER_SOURCE_DIR
  GTEST_SKIP() << "source directory unknown";
#else
  const std::string path = std::string(EIGENFORMER_SOURCE_DIR) + "/docs/conformance.md";
  std::string doc = read_text(path);
  ASSERT_FALSE(doc.empty()) << path;
  const auto b = doc.find(kBegin), e = doc.find(kEnd);
  ASSERT_TRUE(b != std::string::npos && e != std::string::npos && e > b) << path << " lacks the generated block";
  const std::string block = doc.substr(b + std::strlen(kBegin), e - b - std::strlen(kBegin));
  const std::string want = list_markdown() + "\n";
  if (block != want && std::getenv("EIGENFORMER_UPDATE_DOCS")) {
    doc.replace(b + std::strlen(kBegin), e - b - std::strlen(kBegin), want);
    write_bytes(path, std::vector<std::uint8_t>(doc.begin(), doc.end()));
    GTEST_SKIP() << "rewrote the generated block of " << path;
  }
  EXPECT_TRUE(block == want) << path << " is out of date with `eigenformer-run --list`; regenerate with\n"
                             << "  EIGENFORMER_UPDATE_DOCS=1 build/release/tests/test_conformance "
                                "--gtest_filter=ConformanceList.DocsAgreeWithTheRegistry";
#endif
}

TEST(ConformanceList, BinaryPrintsTheRegistry) {
  if (!have_binary()) GTEST_SKIP() << "eigenformer-run is not built here";
  const Proc p = run_binary({"--list"});
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(p.out == list_markdown());
  const Proc v = run_binary({"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find(EIGENFORMER_VERSION_STRING), std::string::npos);
  const Proc h = run_binary({"--help"});
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("usage: eigenformer-run"), std::string::npos);
}

TEST(ConformanceList, EveryDeclaredKeyAndTensorIsDocumented) {
  const std::string md = list_markdown();
  for (const LayerSpec& L : registry().layers()) {
    EXPECT_NE(md.find("### `" + L.name() + "`"), std::string::npos) << L.name();
    for (const KeySpec& k : L.keys()) {
      EXPECT_FALSE(k.description.empty()) << L.name() << "." << k.name;
      EXPECT_NE(md.find("| `" + k.name + "` |"), std::string::npos) << k.name;
    }
    for (const TensorSpec& t : L.tensors()) EXPECT_NE(md.find("| `" + t.name + "` |"), std::string::npos) << t.name;
  }
}

}  // namespace
