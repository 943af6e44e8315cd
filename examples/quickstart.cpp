// quickstart: one pre-norm Llama-style feed-forward sub-block, end to end.
//
//   1. make random weights with Llama checkpoint names and write them to a safetensors file;
//   2. load the layers back from that file by prefix (as you would load a real checkpoint);
//   3. run h = x + MLP(RMSNorm(x)) over a batch of tokens, allocation-free after the first call;
//   4. print the result's checksum and the throughput.
//
// Usage: quickstart [--tokens N] [--hidden D] [--intermediate F] [--out FILE]

#include <eigenformer/eigenformer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

using namespace eigenformer;

int main(int argc, char** argv) try {
  Index tokens = 64, hidden = 512, inter = 1408;
  std::string path = "quickstart.safetensors";
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::atol(next("--tokens"));
    else if (!std::strcmp(argv[i], "--hidden")) hidden = std::atol(next("--hidden"));
    else if (!std::strcmp(argv[i], "--intermediate")) inter = std::atol(next("--intermediate"));
    else if (!std::strcmp(argv[i], "--out")) path = next("--out");
    else {
      std::fprintf(stderr, "usage: %s [--tokens N] [--hidden D] [--intermediate F] [--out FILE]\n", argv[0]);
      return 2;
    }
  }
  std::printf("eigenformer %s, kernels: %s, threads: %d\n", EIGENFORMER_VERSION_STRING, isa_name(), num_threads());

  // 1. Random weights under Hugging Face Llama names, stored as bf16 like most checkpoints.
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  auto random = [&](Index r, Index c) {
    Matrix<float> m(r, c);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
  };
  {
    SafeTensorsWriter w;
    w.set_metadata("format", "pt");
    w.add("model.layers.0.post_attention_layernorm.weight", Vector<float>(Vector<float>::Ones(hidden)), Dtype::BF16);
    w.add("model.layers.0.mlp.gate_proj.weight", random(inter, hidden), Dtype::BF16);
    w.add("model.layers.0.mlp.up_proj.weight", random(inter, hidden), Dtype::BF16);
    w.add("model.layers.0.mlp.down_proj.weight", random(hidden, inter), Dtype::BF16);
    w.write(path);
  }

  // 2. Load by prefix; shapes and names are checked against the configuration.
  const SafeTensors st = SafeTensors::open(path);
  auto norm = RMSNorm<float>::load(st, "model.layers.0.post_attention_layernorm", {hidden, 1e-5});
  auto mlp = MLP<float>::load(st, "model.layers.0.mlp", {hidden, inter, Activation::silu});
  std::printf("loaded %zu tensors from %s: MLP %ld -> %ld -> %ld, %ld parameters\n", st.tensors().size(),
              path.c_str(), long(hidden), long(inter), long(hidden), long(mlp.parameters()));

  // 3. h = x + MLP(RMSNorm(x)); the workspace makes repeated calls allocation-free.
  Matrix<float> x(tokens, hidden), normed(tokens, hidden), out(tokens, hidden);
  std::normal_distribution<float> act(0.0f, 1.0f);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = act(rng);
  Workspace<float> ws;
  auto step = [&] {
    norm.forward(x, normed);
    mlp.forward(normed, out, ws);
    ops::add<float>(out, x, out);
  };
  step();
  const int reps = 5;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) step();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;

  // 4. Report.
  const double flops = 2.0 * double(tokens) * double(mlp.parameters());
  std::printf("tokens %ld: checksum %.6f, %.3f ms per call, %.1f GFLOP/s, %.0f tokens/s\n", long(tokens),
              double(out.sum()), sec * 1e3, flops / sec * 1e-9, double(tokens) / sec);
  std::printf("workspace: %zu floats high water, %zu allocations in %d calls\n", ws.high_water(), ws.allocations(),
              reps + 1);
  return 0;
} catch (const eigenformer::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
