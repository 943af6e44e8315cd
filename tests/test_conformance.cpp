// Conformance: every golden case of tests/data/golden/run (written by tools/make_golden.py from the
// reference modules: torch.nn Linear / LayerNorm / Embedding, transformers LlamaMLP, T5 gated FFN,
// CLIPMLP, Llama/Gemma RMSNorm, Llama / Mistral / Gemma 2 / gpt-oss / StableLM / Bloom attention, prefill
// and decode, DeepSeek-V3 MLA prefill and decode, BitNet BitLinear / AutoBitLinear and decoder layer,
// torchscale MultiScaleRetention and RetNet decoder layer in the parallel / recurrent / chunkwise
// forms) runs through the library in-process (conformance::run_case) and through the eigenformer-run
// binary, and matches the reference output within the layer's stated tolerance; the
// binary's output file is byte-identical to the in-process one. Attention options without a golden
// case (xPos, interleaved RoPE, bidirectional ALiBi, streaming cache, ...) are checked against the
// library called directly. `eigenformer-run --list` and docs/conformance.md must agree.
//
// Malformed cases (second part of this file): each class of mistake (missing / extra / wrongly
// shaped / wrongly typed weight, unknown layer, unknown or missing config key, bad config value,
// missing or invalid input; for every layer family: dense, attention, MLA, BitNet, RetNet, YOCO) gives
// its own conformance::Problem and a message naming the key or tensor, in-process (run_case) and
// through the eigenformer-run binary (exit code 4, "eigenformer-run: <problem>: ..." on stderr);
// unreadable and malformed files give exit code 3, usage errors 2. Random corruptions of valid cases
// never crash (this file runs under ASan + UBSan in the sanitize preset).
//
// The registry behind run_case (every layer instantiated) is compiled once, in
// tools/eigenformer-run/registry.cpp, and linked into this test and eigenformer-run alike
// (CMakeLists.txt): this file sees only its declaration, and includes the layers it calls directly.
//
// <iomanip> comes first on purpose: it declares std::quoted, which argument-dependent lookup would
// pick over a library function named quoted() taking a std::string.
#include <iomanip>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <eigenformer/attention/multi_head_attention.hpp>
#include <eigenformer/cache/kv_cache.hpp>

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

namespace {

struct Bad {
  const char* name;
  const char* base;  // golden case it is made from
  std::function<void(CaseFile&)> edit;
  Problem problem;
  const char* says;  // a substring of the message
};

std::vector<std::uint8_t> u8(std::initializer_list<int> v) { return std::vector<std::uint8_t>(v.begin(), v.end()); }

std::vector<Bad> bad_cases() {
  const Problem MW = Problem::missing_weight, XT = Problem::extra_tensor, SM = Problem::shape_mismatch,
                DM = Problem::dtype_mismatch, UL = Problem::unknown_layer, UK = Problem::unknown_config_key,
                MK = Problem::missing_config_key, BV = Problem::bad_config_value, MI = Problem::missing_input,
                BI = Problem::bad_input;
  const char* lin = "linear_bias";
  const char* att = "attention_llama_mha";
  const char* dec = "decode_llama_gqa";
  const char* emb = "embedding";
  const char* mla = "mla_q_lora_yarn_interleave_expanded";
  const char* mla_dec = "mla_decode_q_lora_yarn";
  const char* bit = "bit_linear_bitlinear_bias";
  const char* ret = "retention_parallel";
  return {
      // missing weight
      {"missing weight", lin, [](CaseFile& c) { c.drop("weight"); }, MW, "weight 'weight' [out_features, in_features] = [40, 24] is missing"},
      {"missing bias", lin, [](CaseFile& c) { c.drop("bias"); }, MW, "'bias'"},
      {"missing bias (attention_bias)", "attention_llama_bias_head_dim", [](CaseFile& c) { c.drop("k_proj.bias"); }, MW, "'k_proj.bias'"},
      {"missing sinks", "attention_gpt_oss_sinks_full", [](CaseFile& c) { c.drop("sinks"); }, MW, "'sinks'"},
      {"prefixed names", lin,
       [](CaseFile& c) {
         const auto* w = c.find("weight");
         const auto t = *w;
         c.drop("weight").put("model.proj.weight", t.dtype, t.shape, t.bytes);
       },
       MW, "case weights carry no prefix"},
      // extra weight / tensor
      {"extra weight", lin, [](CaseFile& c) { c.zeros("lm_head.weight", Dtype::F32, {2, 2}); }, XT, "'lm_head.weight' [2, 2] is not used: layer linear has no such weight"},
      {"weight of another configuration", lin, [](CaseFile& c) { c.set("bias", "false"); }, XT, "'bias' [40] is not used: not used unless bias"},
      {"gate of a plain MLP", "mlp_llama_silu", [](CaseFile& c) { c.set("gated", "false"); }, XT, "'gate_proj.weight'"},
      {"input of another mode", dec, [](CaseFile& c) { c.values("input.attention_mask", Dtype::I64, {9}, std::vector<std::int64_t>(9, 1)); }, XT, "not used in mode decode"},
      {"unknown input", lin, [](CaseFile& c) { c.zeros("input.foo", Dtype::F32, {5}); }, XT, "has no such input"},
      {"output in a case", lin, [](CaseFile& c) { c.zeros("output.hidden_states", Dtype::F32, {5, 40}); }, XT, "store expected outputs as expected.*"},
      {"position_ids with ALiBi", "attention_bloom_alibi", [](CaseFile& c) { c.values("input.position_ids", Dtype::I64, {10}, std::vector<std::int64_t>(10, 0)); }, XT, "not used unless position_encoding=rope|xpos"},
      // wrong shape
      {"transposed weight", att, [](CaseFile& c) { c.zeros("k_proj.weight", Dtype::F32, {32, 16}); }, SM, "'k_proj.weight' has shape [32, 16], expected [num_key_value_heads * head_dim, hidden_size] = [32, 32]"},
      {"weight of rank 1", lin, [](CaseFile& c) { c.zeros("weight", Dtype::F32, {960}); }, SM, "expected [out_features, in_features] = [40, 24]"},
      {"bias too long", lin, [](CaseFile& c) { c.zeros("bias", Dtype::F32, {41}); }, SM, "'bias' has shape [41]"},
      {"position_ids of another length", att, [](CaseFile& c) { c.values("input.position_ids", Dtype::I64, {6}, std::vector<std::int64_t>(6, 0)); }, SM, "(T = 7 from input.hidden_states)"},
      {"input of the wrong width", lin, [](CaseFile& c) { c.zeros("input.hidden_states", Dtype::F32, {5, 23}); }, SM, "expected [T, in_features] = [5, 24]"},
      {"hidden_size off by one", lin, [](CaseFile& c) { c.set("in_features", "23"); }, SM, "'weight' has shape [40, 24], expected [out_features, in_features] = [40, 23]"},
      // wrong dtype
      {"integer weight", lin, [](CaseFile& c) { c.zeros("weight", Dtype::I32, {40, 24}); }, DM, "'weight' has dtype I32, expected float"},
      {"float token ids", emb, [](CaseFile& c) { c.zeros("input.input_ids", Dtype::F32, {9}); }, DM, "'input.input_ids' has dtype F32, expected integer"},
      {"F8 input", lin, [](CaseFile& c) { c.zeros("input.hidden_states", Dtype::F8_E4M3, {5, 24}); }, DM, "has dtype F8_E4M3"},
      {"U64 position ids", att, [](CaseFile& c) { c.zeros("input.position_ids", Dtype::U64, {7}); }, DM, "has dtype U64"},
      // unknown layer
      {"unknown layer", lin, [](CaseFile& c) { c.set("layer", "retnet"); }, UL, "unknown layer 'retnet' (registered: linear, mlp, rms_norm, layer_norm, embedding, attention"},
      {"no layer", lin, [](CaseFile& c) { c.erase("layer"); }, UL, "no \"layer\" entry"},
      // unknown config key
      {"unknown config key", lin, [](CaseFile& c) { c.set("dropout", "0.1"); }, UK, "unknown config key 'dropout' for layer linear"},
      {"HF key of another layer", att, [](CaseFile& c) { c.set("rms_norm_eps", "1e-06").set("vocab_size", "16"); }, UK, "unknown config keys 'rms_norm_eps', 'vocab_size'"},
      // missing config key
      {"missing config key", lin, [](CaseFile& c) { c.erase("in_features"); }, MK, "required config key 'in_features' (integer) is missing"},
      // bad config value
      {"not an integer", lin, [](CaseFile& c) { c.set("in_features", "abc"); }, BV, "config key 'in_features' = 'abc': expected an integer"},
      {"integer written as float", lin, [](CaseFile& c) { c.set("in_features", "24.0"); }, BV, "expected an integer"},
      {"integer out of range", lin, [](CaseFile& c) { c.set("out_features", "0"); }, BV, "'out_features' = '0': must be >= 1"},
      {"integer overflow", lin, [](CaseFile& c) { c.set("out_features", "99999999999999999999"); }, BV, "expected an integer"},
      {"null not allowed", lin, [](CaseFile& c) { c.set("in_features", "null"); }, BV, "null is not allowed"},
      {"not a boolean", lin, [](CaseFile& c) { c.set("bias", "True"); }, BV, "expected true or false"},
      {"not a number", "rms_norm_llama", [](CaseFile& c) { c.set("rms_norm_eps", "1e-5x"); }, BV, "expected a number"},
      {"negative eps", "rms_norm_llama", [](CaseFile& c) { c.set("rms_norm_eps", "-1e-05"); }, BV, "must be >= 0"},
      {"unknown activation", "mlp_llama_silu", [](CaseFile& c) { c.set("hidden_act", "quick_gelu"); }, BV, "expected one of silu, swish"},
      {"gated fc MLP", "mlp_fc_gelu", [](CaseFile& c) { c.set("gated", "true"); }, BV, "no gate projection"},
      {"unknown mode", att, [](CaseFile& c) { c.set("mode", "train"); }, BV, "mode 'train' is not a mode of layer attention (modes: prefill, decode)"},
      {"heads not a multiple", att, [](CaseFile& c) { c.set("num_key_value_heads", "3"); }, BV, "not a multiple of num_key_value_heads = 3"},
      {"hidden not divisible", att, [](CaseFile& c) { c.set("num_attention_heads", "5"); }, BV, "not divisible by num_attention_heads = 5"},
      {"zero window", att, [](CaseFile& c) { c.set("sliding_window", "0"); }, BV, "'sliding_window' = '0': must be >= 1"},
      {"rope_scaling not JSON", att, [](CaseFile& c) { c.set("rope_scaling", "{\"rope_type\": \"linear\", "); }, BV, "invalid JSON"},
      {"rope_scaling not an object", att, [](CaseFile& c) { c.set("rope_scaling", "[1]"); }, BV, "expected a JSON object or null"},
      {"rope_scaling unknown key", att, [](CaseFile& c) { c.set("rope_scaling", R"({"rope_type": "linear", "factor": 2.0, "beta_fast": 4})"); }, BV, "'beta_fast' is not a parameter of rope_type linear"},
      {"rope_scaling missing key", att, [](CaseFile& c) { c.set("rope_scaling", R"({"rope_type": "llama3", "factor": 8.0})"); }, BV, "rope_type llama3 needs key"},
      {"rope_scaling unknown type", att, [](CaseFile& c) { c.set("rope_scaling", R"({"rope_type": "longrope", "factor": 2.0})"); }, BV, "longrope is not supported"},
      {"rope_scaling factor a string", att, [](CaseFile& c) { c.set("rope_scaling", R"({"type": "linear", "factor": "2"})"); }, BV, "'factor' must be a number"},
      {"dynamic without max_position_embeddings", att, [](CaseFile& c) { c.set("rope_scaling", R"({"rope_type": "dynamic", "factor": 2.0})"); }, BV, "needs max_position_embeddings"},
      {"odd rotary dims", att, [](CaseFile& c) { c.set("partial_rotary_factor", "0.375"); }, BV, "must be even"},
      {"rope key without rope", att, [](CaseFile& c) { c.set("position_encoding", "alibi").set("rope_theta", "500.0"); }, BV, "'rope_theta' needs position_encoding rope"},
      {"decode key in prefill", att, [](CaseFile& c) { c.set("cache_dtype", "float16"); }, BV, "applies to mode decode only"},
      {"bad cache dtype", dec, [](CaseFile& c) { c.set("cache_dtype", "int8"); }, BV, "expected one of float32, float16, bfloat16"},
      {"prompt longer than the case", dec, [](CaseFile& c) { c.set("prompt_length", "10"); }, BV, "prompt_length = 10 exceeds the 9 tokens"},
      {"cache too small", dec, [](CaseFile& c) { c.set("cache_capacity", "4"); }, BV, "cannot take"},
      {"xPos with a cache", dec, [](CaseFile& c) { c.set("position_encoding", "xpos").erase("rope_theta"); }, BV, "decoding with a KV cache is not supported"},
      {"bloom names with GQA", "attention_bloom_alibi", [](CaseFile& c) { c.set("num_key_value_heads", "2"); }, BV, "needs num_key_value_heads = num_attention_heads"},
      // missing input
      {"missing input", lin, [](CaseFile& c) { c.drop("input.hidden_states"); }, MI, "input 'input.hidden_states' [T, in_features] = [T, 24] is missing"},
      {"missing token ids", emb, [](CaseFile& c) { c.drop("input.input_ids"); }, MI, "'input.input_ids'"},
      // bad input values
      {"token id out of range", emb, [](CaseFile& c) { c.values("input.input_ids", Dtype::I64, {2}, std::vector<std::int64_t>{3, 50}); }, BI, "token id 50 at position 1 is outside [0, 50)"},
      {"negative token id", emb, [](CaseFile& c) { c.values("input.input_ids", Dtype::I8, {1}, std::vector<std::int8_t>{-1}); }, BI, "token id -1"},
      {"mask value 2", att, [](CaseFile& c) { c.put("input.attention_mask", Dtype::U8, {7}, u8({1, 1, 2, 1, 1, 1, 1})); }, BI, "element 2 = 2: a mask holds 0 or 1"},
      {"negative position", att, [](CaseFile& c) { c.values("input.position_ids", Dtype::I32, {7}, std::vector<std::int32_t>{0, 1, 2, -3, 4, 5, 6}); }, BI, "positions[3] = -3"},
      {"no tokens", lin, [](CaseFile& c) { c.zeros("input.hidden_states", Dtype::F32, {0, 24}); }, BI, "has 0 tokens"},
      // MLA
      {"MLA missing kv_b_proj", mla, [](CaseFile& c) { c.drop("kv_b_proj.weight"); }, MW, "weight 'kv_b_proj.weight' [num_attention_heads * kv_b_head_dim, kv_lora_rank] = [80, 24] is missing"},
      {"MLA q_proj with q_lora_rank", mla, [](CaseFile& c) { c.zeros("q_proj.weight", Dtype::F32, {64, 32}); }, XT, "'q_proj.weight' [64, 32] is not used: not used unless !q_lora"},
      {"MLA q_a_proj of another rank", mla, [](CaseFile& c) { c.set("q_lora_rank", "12"); }, SM, "'q_a_proj.weight' has shape [16, 32], expected [q_lora_rank, hidden_size] = [12, 32]"},
      {"MLA kv head grouping", mla, [](CaseFile& c) { c.set("num_key_value_heads", "2"); }, BV, "num_key_value_heads = 2 must equal num_attention_heads = 4"},
      {"MLA odd rope dims", mla, [](CaseFile& c) { c.set("qk_rope_head_dim", "7"); }, BV, "qk_rope_head_dim = 7 must be even"},
      {"MLA unknown path", mla, [](CaseFile& c) { c.set("path", "flash"); }, BV, "expected one of automatic, expanded, absorbed"},
      {"MLA cache key in prefill", mla, [](CaseFile& c) { c.set("cache_dtype", "float16"); }, BV, "'cache_dtype' applies to mode decode only"},
      {"MLA position_ids in decode", mla_dec, [](CaseFile& c) { c.values("input.position_ids", Dtype::I64, {9}, std::vector<std::int64_t>(9, 0)); }, XT, "not used in mode decode"},
      // BitNet
      {"packed weight unpacked", bit, [](CaseFile& c) { c.zeros("weight", Dtype::U8, {24, 40}); }, SM, "expected [out_features_packed, in_features] = [6, 40]"},
      {"packed weight as float", bit, [](CaseFile& c) { c.zeros("weight", Dtype::F32, {6, 40}); }, DM, "'weight' has dtype F32, expected integer"},
      {"packed weight as I8", bit, [](CaseFile& c) { c.zeros("weight", Dtype::I8, {6, 40}); }, DM, "has dtype I8; expected U8"},
      {"packed code 3", bit, [](CaseFile& c) { c.put("weight", Dtype::U8, {6, 40}, std::vector<std::uint8_t>(240, 0xff)); }, BI, "has the code 3"},
      {"missing weight_scale", bit, [](CaseFile& c) { c.drop("weight_scale"); }, MW, "weight 'weight_scale' [1] is missing"},
      {"online BitLinear", "bit_linear_autobitlinear_online", [](CaseFile& c) { c.set("linear_class", "bitlinear"); }, BV, "quantization_mode online needs linear_class autobitlinear"},
      {"weight_scale of an online layer", "bit_linear_autobitlinear_online", [](CaseFile& c) { c.zeros("weight_scale", Dtype::F32, {1}); }, XT, "not used unless quantization_mode=offline"},
      {"BitNet layer missing k_proj scale", "bitnet_layer_bitlinear", [](CaseFile& c) { c.drop("self_attn.k_proj.weight_scale"); }, MW, "'self_attn.k_proj.weight_scale' [1] is missing"},
      {"BitNet layer sub-norm width", "bitnet_layer_bitlinear", [](CaseFile& c) { c.zeros("mlp.ffn_sub_norm.weight", Dtype::F32, {32}); }, SM, "'mlp.ffn_sub_norm.weight' has shape [32], expected [intermediate_size] = [48]"},
      {"BitNet layer heads", "bitnet_layer_bitlinear", [](CaseFile& c) { c.set("num_key_value_heads", "3"); }, BV, "must be a multiple of num_key_value_heads = 3"},
      // RetNet
      {"retention odd key_dim", ret, [](CaseFile& c) { c.set("decoder_retention_heads", "3"); }, BV, "decoder_embed_dim = 16 must be decoder_retention_heads = 3 times an even key_dim"},
      {"retention unknown mode", ret, [](CaseFile& c) { c.set("mode", "decode"); }, BV, "mode 'decode' is not a mode of layer retention (modes: parallel, recurrent, chunkwise)"},
      {"retention chunk key in parallel", ret, [](CaseFile& c) { c.set("recurrent_chunk_size", "4"); }, BV, "'recurrent_chunk_size' applies to mode chunkwise only"},
      {"retention HF key", ret, [](CaseFile& c) { c.set("hidden_size", "16"); }, UK, "unknown config key 'hidden_size' for layer retention"},
      {"retention value width", ret, [](CaseFile& c) { c.zeros("v_proj.weight", Dtype::F32, {16, 16}); }, SM, "'v_proj.weight' has shape [16, 16], expected [decoder_value_embed_dim, decoder_embed_dim] = [32, 16]"},
      {"RetNet layer missing gate", "retnet_layer_gelu_parallel", [](CaseFile& c) { c.drop("ffn.gate.weight"); }, MW, "'ffn.gate.weight' [decoder_ffn_embed_dim, decoder_embed_dim] = [32, 16] is missing"},
      {"RetNet layer prefixed names", "retnet_layer_gelu_parallel",
       [](CaseFile& c) {
         const auto t = *c.find("final_layer_norm.weight");
         c.drop("final_layer_norm.weight").put("layers.0.final_layer_norm.weight", t.dtype, t.shape, t.bytes);
       },
       MW, "case weights carry no prefix"},
      // YOCO (gated retention, decoder-decoder)
      {"gated retention odd head_dim", "gated_retention_chunkwise", [](CaseFile& c) { c.set("n_self_heads", "3"); }, BV, "dim = 32 must be n_self_heads = 3 times an even head_dim"},
      {"gated retention chunk key in recurrent", "gated_retention_recurrent_h4", [](CaseFile& c) { c.set("chunk_size", "4"); }, BV, "'chunk_size' applies to mode chunkwise only"},
      {"gated retention missing gt_proj", "gated_retention_chunkwise", [](CaseFile& c) { c.drop("gt_proj.weight"); }, MW, "'gt_proj.weight' [n_self_heads, dim] = [2, 32] is missing"},
      {"gated retention parallel mode", "gated_retention_chunkwise", [](CaseFile& c) { c.set("mode", "parallel"); }, BV, "mode 'parallel' is not a mode of layer gated_retention (modes: chunkwise, recurrent)"},
      {"YOCO missing second self layer", "yoco_prefill_gqa", [](CaseFile& c) { c.drop("self_decoder.layers.1.mixer.gt_proj.weight"); }, MW, "'self_decoder.layers.1.mixer.gt_proj.weight' [n_self_heads, dim] = [2, 16] is missing"},
      {"YOCO fewer layers than weights", "yoco_prefill_gqa", [](CaseFile& c) { c.set("n_layers", "2"); }, XT, "not used unless two_layers_each"},
      {"YOCO odd layer count", "yoco_prefill_gqa", [](CaseFile& c) { c.set("n_layers", "3"); }, BV, "n_layers = 3 must be 2 or 4"},
      {"YOCO k_proj of all heads", "yoco_prefill_gqa", [](CaseFile& c) { c.zeros("cross_decoder.k_proj.weight", Dtype::F32, {16, 16}); }, SM, "'cross_decoder.k_proj.weight' has shape [16, 16], expected [n_attn_kv_heads * head_dim, dim] = [8, 16]"},
      {"YOCO prompt in prefill", "yoco_prefill_gqa", [](CaseFile& c) { c.set("prompt_length", "2"); }, BV, "'prompt_length' applies to mode decode only"},
      {"YOCO prompt too long", "yoco_decode_prompt", [](CaseFile& c) { c.set("prompt_length", "10"); }, BV, "prompt_length = 10 exceeds the 9 tokens"},
  };
}

std::string message(const CaseError& e) { return std::string(to_string(e.problem())) + ": " + e.where() + ": " + e.detail(); }

TEST(ConformanceErrors, EachMalformedCaseGivesItsOwnError) {
  for (const Bad& b : bad_cases()) {
    SCOPED_TRACE(b.name);
    CaseFile c = CaseFile::open(b.base);
    b.edit(c);
    try {
      const SafeTensors st = c.parse(std::string(b.name) + ".safetensors");
      (void)run_case(st);
      ADD_FAILURE() << "accepted";
    } catch (const CaseError& e) {
      EXPECT_EQ(e.problem(), b.problem) << message(e);
      EXPECT_NE(message(e).find(b.says), std::string::npos) << message(e);
      EXPECT_NE(message(e).find(b.name), std::string::npos) << "the message names the case file: " << message(e);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a CaseError: " << e.what();
    }
  }
}

TEST(ConformanceErrors, TheUnmodifiedBasesAreValid) {
  for (const char* base : {"linear_bias", "attention_llama_mha", "decode_llama_gqa", "embedding", "mlp_llama_silu",
                           "mlp_fc_gelu", "rms_norm_llama", "attention_bloom_alibi", "attention_gpt_oss_sinks_full",
                           "attention_llama_bias_head_dim", "mla_q_lora_yarn_interleave_expanded",
                           "mla_decode_q_lora_yarn", "bit_linear_bitlinear_bias", "bit_linear_autobitlinear_online",
                           "bitnet_layer_bitlinear", "retention_parallel", "retnet_layer_gelu_parallel",
                           "gated_retention_chunkwise", "gated_retention_recurrent_h4", "yoco_prefill_gqa",
                           "yoco_decode_prompt"}) {
    SCOPED_TRACE(base);
    EXPECT_NO_THROW(run_case(CaseFile::open(base).parse()));
  }
}

TEST(ConformanceErrors, ThroughTheBinary) {
  if (!have_binary()) GTEST_SKIP() << "eigenformer-run is not built here";
  for (const Bad& b : bad_cases()) {
    SCOPED_TRACE(b.name);
    CaseFile c = CaseFile::open(b.base);
    b.edit(c);
    const std::string in = temp_path("bad.safetensors"), out = temp_path("out.safetensors");
    write_bytes(in, c.bytes());
    const Proc p = run_binary({in, out});
    EXPECT_EQ(p.code, 4) << p.err;
    const std::string head = std::string("eigenformer-run: ") + to_string(b.problem) + ": ";
    EXPECT_EQ(p.err.rfind(head, 0), 0u) << p.err;
    EXPECT_NE(p.err.find(b.says), std::string::npos) << p.err;
    EXPECT_TRUE(read_bytes(out).empty()) << "an output was written";
    std::remove(in.c_str());
  }
}

TEST(ConformanceErrors, FilesAndUsageThroughTheBinary) {
  if (!have_binary()) GTEST_SKIP() << "eigenformer-run is not built here";
  const std::string ok = golden_run_dir() + "/linear_bias.safetensors";
  // usage
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {ok}, {ok, "a", "b"}, {"--frobnicate"}, {"--list", "x"}, {ok, "--out"}}) {
    const Proc p = run_binary(args);
    EXPECT_EQ(p.code, 2) << p.err;
    EXPECT_NE(p.err.find("usage"), std::string::npos) << p.err;
  }
  // unreadable / unwritable
  Proc p = run_binary({golden_run_dir() + "/no_such_case.safetensors", temp_path("o")});
  EXPECT_EQ(p.code, 3) << p.err;
  EXPECT_EQ(p.err.rfind("eigenformer-run: i/o error: ", 0), 0u) << p.err;
  p = run_binary({ok, "/nonexistent-dir/out.safetensors"});
  EXPECT_EQ(p.code, 3) << p.err;
  EXPECT_NE(p.err.find("cannot open for writing"), std::string::npos) << p.err;
  p = run_binary({golden_run_dir(), temp_path("o")});  // a directory
  EXPECT_EQ(p.code, 3) << p.err;
  // every file of the malformed-safetensors suite: exit 3 (malformed), never a crash; the valid ones
  // lack a layer: exit 4
  const std::string dir = data_dir() + "/safetensors";
  const auto files = files_in(dir);
  ASSERT_FALSE(files.empty());
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    p = run_binary({dir + "/" + f + ".safetensors", temp_path("o")});
    if (f.rfind("valid_", 0) == 0) {
      EXPECT_EQ(p.code, 4) << p.err;
      EXPECT_NE(p.err.find("unknown layer"), std::string::npos) << p.err;
    } else {
      EXPECT_EQ(p.code, 3) << p.err;
      EXPECT_EQ(p.err.rfind("eigenformer-run: malformed file: ", 0), 0u) << p.err;
    }
  }
}

// Random corruptions of valid cases (header bytes, metadata values, tensor data): every outcome is a
// result or a CaseError / Error, never another exception or a memory error.
TEST(ConformanceErrors, CorruptedCasesNeverCrash) {
  auto g = rng(77);
  int results = 0, errors = 0;
  for (const char* base : {"linear_bias", "embedding", "attention_llama_gqa_llama3_rope", "decode_bloom_alibi",
                           "mla_decode_q_lora_yarn", "bitnet_layer_decode", "retention_chunkwise_h4",
                           "yoco_decode_prompt"}) {
    const auto good = CaseFile::open(base).bytes();
    std::uint64_t header = 0;
    for (int i = 0; i < 8; ++i) header |= std::uint64_t(good[static_cast<std::size_t>(i)]) << (8 * i);
    for (int it = 0; it < 400; ++it) {
      auto b = good;
      const int flips = 1 + static_cast<int>(g() % 3);
      for (int k = 0; k < flips; ++k) {
        // mostly inside the JSON header, where a flip changes names, shapes, dtypes and config values
        const std::size_t end = g() % 4 == 0 ? b.size() : static_cast<std::size_t>(8 + header);
        const std::size_t at = g() % end;
        b[at] = static_cast<std::uint8_t>(g() % 4 == 0 ? g() : b[at] ^ (1u << (g() % 8)));
      }
      try {
        const SafeTensors st = SafeTensors::from_bytes(b);
        (void)run_case(st);
        ++results;
      } catch (const Error&) {
        ++errors;
      } catch (const std::exception& e) {
        ADD_FAILURE() << base << ": unexpected exception " << e.what();
      }
      // The command-line entry point never throws and maps every failure to an exit code.
      if (it % 25 == 0) {
        const std::string in = temp_path("fuzz.safetensors"), out = temp_path("fuzz.out");
        write_bytes(in, b);
        const char* argv[] = {"eigenformer-run", in.c_str(), out.c_str()};
        std::ostringstream so, se;
        const int code = run_cli(3, argv, so, se);
        EXPECT_TRUE(code == 0 || code == 3 || code == 4) << code << " " << se.str();
        std::remove(in.c_str());
        std::remove(out.c_str());
      }
    }
  }
  EXPECT_GT(errors, 0);
  std::printf("[ fuzz     ] %d corrupted cases ran, %d rejected\n", results, errors);
}

}  // namespace
