// MultiScaleRetention and RetNetDecoderLayer against torchscale 0.3.0's own modules: every fixture in
// tests/data/golden/retention (written by tools/make_golden_retention.py: the module's weights under
// its checkpoint names, an input, and the module's outputs in the parallel, recurrent and chunkwise
// forms, the chunkwise ones with chunk sizes that do and do not divide T) is loaded by its names, run
// through the layer in the same form, and compared with torchscale's output of that form.
#include <eigenformer/retention/retnet_block.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>

#include "golden_util.hpp"
#include "test_util.hpp"

using namespace eigenformer;

namespace {

using eftest::meta;
std::string data_dir() { return eftest::golden_dir("retention"); }
std::vector<std::string> fixtures() { return eftest::golden_fixtures("retention"); }

std::vector<Index> chunk_sizes(const SafeTensors& st) {
  std::vector<Index> out;
  std::stringstream ss(meta(st, "chunk_sizes"));
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stol(item));
  return out;
}

RetNetLayerConfig config_from(const SafeTensors& st) {
  RetNetLayerConfig c;
  c.retention.embed_dim = std::stol(meta(st, "decoder_embed_dim"));
  c.retention.value_dim = std::stol(meta(st, "decoder_value_embed_dim"));
  c.retention.num_heads = std::stol(meta(st, "decoder_retention_heads"));
  c.retention.layernorm_eps = std::stod(meta(st, "layernorm_eps"));
  if (meta(st, "kind") == "layer") {
    c.ffn_dim = std::stol(meta(st, "decoder_ffn_embed_dim"));
    c.activation = parse_activation(meta(st, "activation_fn"));  // "gelu" (erf) or "swish"
  }
  return c;
}

// Relative to the largest output: float32 on both sides, summation orders differ; the group norm
// divides by the RMS of small pre-norm values, which keeps relative (not absolute) errors.
constexpr double kTolerance = 2e-6;  // measured <= 3e-7

TEST(RetentionGolden, AllFixturesMatchTorchscale) {
  const auto names = fixtures();
  ASSERT_GE(names.size(), 5u) << "no fixtures in " << data_dir();
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const SafeTensors st = SafeTensors::open(data_dir() + "/" + name + ".safetensors");
    const RetNetLayerConfig cfg = config_from(st);
    const Index T = std::stol(meta(st, "T")), E = cfg.retention.embed_dim;
    const Matrix<float> x = st.matrix<float>("input", T, E);
    const bool layer = meta(st, "kind") == "layer";
    const std::string prefix = meta(st, "prefix");
    const auto ret = MultiScaleRetention<float>::load(st, layer ? prefix + ".retention" : prefix, cfg.retention);
    RetNetDecoderLayer<float> block;
    if (layer) block = RetNetDecoderLayer<float>::load(st, prefix, cfg);

    auto compare = [&](const std::string& out_name, const Matrix<float>& got) {
      const Matrix<float> want = st.matrix<float>(out_name, T, E);
      const double scale = want.cwiseAbs().maxCoeff();
      const double err = (got - want).cwiseAbs().maxCoeff();
      std::printf("[ measured ] %s %s: max error / output scale = %.2e\n", name.c_str(), out_name.c_str(), err / scale);
      EXPECT_LT(err, kTolerance * scale) << out_name << ": max error " << err << ", output scale " << scale;
    };
    Workspace<float> ws;
    Matrix<float> y(T, E);
    // parallel
    if (layer) {
      block.forward_parallel(x, y, ws);
    } else {
      ret.forward_parallel(x, y, ws);
    }
    compare("output.parallel", y);
    // recurrent, one token per call as torchscale's incremental decoding
    {
      auto state = ret.make_state();
      for (Index t = 0; t < T; ++t) {
        if (layer) {
          block.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), state, ws);
        } else {
          ret.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), state, ws);
        }
      }
      compare("output.recurrent", y);
    }
    for (Index B : chunk_sizes(st)) {
      if (layer) {
        block.forward_chunkwise(x, y, ws, B);
      } else {
        ret.forward_chunkwise(x, y, ws, B);
      }
      compare("output.chunkwise" + std::to_string(B), y);
    }
    // The forms differ from each other in torchscale too (eps, issue #40): slightly at eps 1e-6 (the
    // fixtures separate them only at the 1e-7 level), visibly in retention_eps (eps 1e-3, large scores).
    const Matrix<float> par = st.matrix<float>("output.parallel", T, E);
    double forms = 0;
    for (const auto& info : st.tensors())
      if (info.name.rfind("output.", 0) == 0 && info.name != "output.parallel")
        forms = std::max(forms, double((st.matrix<float>(info.name, T, E) - par).cwiseAbs().maxCoeff()));
    forms /= par.cwiseAbs().maxCoeff();
    std::printf("[ measured ] %s torchscale max |other form - parallel| / output scale = %.2e\n", name.c_str(), forms);
    if (name == "retention_eps") {
      EXPECT_GT(forms, 100 * kTolerance);
    }
  }
}

}  // namespace
