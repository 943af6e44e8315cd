// Sparse attention layers against naive double computations written from the reference code's
// structure: LongformerSelfAttention (HF modeling_longformer.py: local rows over window + global keys,
// global rows with the *_global projections), BigBirdBlockSparseAttention (HF layout; eval mode with
// its duplicated block 0 written out as explicit repeated keys), MemoryCompressedAttention
// (tensor2tensor conv memory + mask; local blocks).
#include <eigenformer/attention/bigbird.hpp>
#include <eigenformer/attention/longformer.hpp>
#include <eigenformer/attention/memory_compressed.hpp>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefMatrix;

namespace {

Linear<float> rand_linear(Index in, Index out, bool bias, std::mt19937& g, const std::string& name) {
  Matrix<float> w = eftest::random_matrix<float>(out, in, g, 0.3);
  Vector<float> b;
  if (bias) b = eftest::random_matrix<float>(out, 1, g, 0.3).col(0);
  return Linear<float>(w, b, name);
}

RefMatrix project(const Linear<float>& l, const RefMatrix& x) {
  RefMatrix y = x * l.weight().cast<double>().transpose();
  if (l.has_bias()) y.rowwise() += l.bias().cast<double>().transpose();
  return y;
}

// Softmax attention of query row i of head h over an explicit list of key rows (repeats count twice).
void attend(const RefMatrix& q, const RefMatrix& k, const RefMatrix& v, long i, long h, long d,
            const std::vector<long>& keys, RefMatrix& out) {
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> s;
  double m = -1e300;
  for (long j : keys) {
    s.push_back(scale * q.block(i, h * d, 1, d).cwiseProduct(k.block(j, h * d, 1, d)).sum());
    m = std::max(m, s.back());
  }
  double z = 0;
  for (double& x : s) z += (x = std::exp(x - m));
  out.block(i, h * d, 1, d).setZero();
  for (std::size_t n = 0; n < keys.size(); ++n) out.block(i, h * d, 1, d) += (s[n] / z) * v.block(keys[n], h * d, 1, d);
}

void expect_near(const Matrix<float>& a, const RefMatrix& b, double tol) {
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) ASSERT_NEAR(a(i, j), b(i, j), tol) << "row " << i << " col " << j;
}

TEST(SparseLayers, LongformerSelfAttention) {
  auto g = eftest::rng(960);
  const Index D = 32, H = 4, d = 8;
  for (Index window : {2, 8})
    for (Index dil : {1, 2}) {
      std::vector<Linear<float>> p;
      for (const char* n : {"query", "key", "value", "query_global", "key_global", "value_global"})
        p.push_back(rand_linear(D, D, true, g, n));
      LongformerSelfAttention layer({D, H, window, dil}, p, "layer");
      const Index T = 4 * window;
      const Matrix<float> x = eftest::random_matrix<float>(T, D, g);
      std::vector<std::uint8_t> global(static_cast<std::size_t>(T), 0);
      global[1] = global[static_cast<std::size_t>(T - 2)] = 1;
      Matrix<float> y(T, D);
      Workspace<float> ws;
      layer.forward(x, global, y, ws);
      const RefMatrix xd = x.cast<double>();
      const RefMatrix q = project(p[0], xd), k = project(p[1], xd), v = project(p[2], xd);
      const RefMatrix qg = project(p[3], xd), kg = project(p[4], xd), vg = project(p[5], xd);
      RefMatrix want(T, D);
      for (long i = 0; i < T; ++i)
        for (long h = 0; h < H; ++h) {
          std::vector<long> keys;
          if (global[static_cast<std::size_t>(i)]) {
            for (long j = 0; j < T; ++j) keys.push_back(j);
            attend(qg, kg, vg, i, h, d, keys, want);
            continue;
          }
          // HF: window keys that are not global, then the global keys (once).
          const long w = window / 2 * dil;
          for (long j = std::max<long>(0, i - w); j <= std::min<long>(T - 1, i + w); ++j)
            if ((i - j) % dil == 0 && !global[static_cast<std::size_t>(j)]) keys.push_back(j);
          for (long j = 0; j < T; ++j)
            if (global[static_cast<std::size_t>(j)]) keys.push_back(j);
          attend(q, k, v, i, h, d, keys, want);
        }
      expect_near(y, want, 2e-5);
      // No global token: the window alone.
      layer.forward(x, {}, y, ws);
      for (long i = 0; i < T; ++i)
        for (long h = 0; h < H; ++h) {
          std::vector<long> keys;
          const long w = window / 2 * dil;
          for (long j = std::max<long>(0, i - w); j <= std::min<long>(T - 1, i + w); ++j)
            if ((i - j) % dil == 0) keys.push_back(j);
          attend(q, k, v, i, h, d, keys, want);
        }
      expect_near(y, want, 2e-5);
      Matrix<float> bad(T + 1, D), ybad(T + 1, D);
      EXPECT_THROW(layer.forward(bad, {}, ybad, ws), Error);  // not a multiple of the window
    }
  std::vector<Linear<float>> p(6, Linear<float>(Linear<float>::Config{D, D, true}));
  try {
    LongformerSelfAttention bad({D, H, 7, 1}, p, "encoder.layer.0.attention.self");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LongformerSelfAttention 'encoder.layer.0.attention.self'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("attention_window = 7"), std::string::npos) << e.what();
  }
}

TEST(SparseLayers, BigBirdBlockSparseAttention) {
  auto g = eftest::rng(961);
  const Index D = 32, H = 4, d = 8, b = 8, r = 2;
  for (auto mode : {BigBirdBlockSparseAttention::Random::seeded, BigBirdBlockSparseAttention::Random::hf_eval})
    for (Index T : {64, 80, 160}) {  // 64 <= (5 + 2 r) b = 72: full attention
      BigBirdBlockSparseAttention::Config cfg{D, H, b, r, true, mode, 11};
      const Linear<float> lq = rand_linear(D, D, true, g, "query"), lk = rand_linear(D, D, true, g, "key"),
                          lv = rand_linear(D, D, true, g, "value");
      BigBirdBlockSparseAttention layer(cfg, lq, lk, lv);
      const Matrix<float> x = eftest::random_matrix<float>(T, D, g);
      Matrix<float> y(T, D);
      Workspace<float> ws;
      layer.forward(x, y, ws);
      const RefMatrix xd = x.cast<double>();
      const RefMatrix q = project(lq, xd), k = project(lk, xd), v = project(lv, xd);
      const long nb = T / b;
      const bool full = T <= (5 + 2 * r) * b;
      const std::vector<std::int64_t> rnd = full ? std::vector<std::int64_t>{} : bigbird_random_blocks(T, H, {b, r, 11});
      RefMatrix want(T, D);
      for (long i = 0; i < T; ++i)
        for (long h = 0; h < H; ++h) {
          const long qb = i / b;
          std::vector<long> blocks;
          if (full || qb == 0 || qb == nb - 1) {
            for (long kb = 0; kb < nb; ++kb) blocks.push_back(kb);
          } else {
            // HF's key order: first block, sliding window, last block, random blocks.
            blocks = {0};
            for (long kb = std::max<long>(1, qb - 1); kb <= std::min(nb - 2, qb + 1); ++kb) blocks.push_back(kb);
            blocks.push_back(nb - 1);
            for (long t = 0; t < r; ++t)
              blocks.push_back(mode == BigBirdBlockSparseAttention::Random::hf_eval
                                   ? 0  // HF eval: all-zero random table
                                   : rnd[static_cast<std::size_t>((h * (nb - 2) + qb - 1) * r + t)]);
          }
          std::vector<long> keys;
          for (long kb : blocks)
            for (long j = kb * b; j < (kb + 1) * b; ++j) keys.push_back(j);
          attend(q, k, v, i, h, d, keys, want);
        }
      expect_near(y, want, 2e-5);
      Matrix<float> bad(T + 3, D), ybad(T + 3, D);
      EXPECT_THROW(layer.forward(bad, ybad, ws), Error);
    }
}

TEST(SparseLayers, MemoryCompressedAndLocalBlock) {
  auto g = eftest::rng(962);
  const Index D = 16, H = 2, d = 8;
  for (auto mode : {MemoryCompressedAttention::Mode::compressed, MemoryCompressedAttention::Mode::local_block})
    for (Index T : {1, 2, 3, 10, 31}) {
      const Index f = 3, blk = 4;
      const Linear<float> lq = rand_linear(D, D, false, g, "q"), lk = rand_linear(D, D, false, g, "k"),
                          lv = rand_linear(D, D, false, g, "v"), lo = rand_linear(D, D, false, g, "output_transform");
      const Matrix<float> cw = eftest::random_matrix<float>(D, D * f, g, 0.3);
      const Vector<float> cb = eftest::random_matrix<float>(D, 1, g, 0.3).col(0);
      MemoryCompressedAttention layer({D, H, mode, f, blk}, lq, lk, lv, lo, cw, cb);
      const Matrix<float> x = eftest::random_matrix<float>(T, D, g);
      Matrix<float> y(T, D);
      Workspace<float> ws;
      layer.forward(x, y, ws);
      const RefMatrix xd = x.cast<double>();
      const bool comp = mode == MemoryCompressedAttention::Mode::compressed;
      RefMatrix mem = xd;
      if (comp) {  // t2t: [x_0; Conv1D(kernel = stride = f, valid)(x)]
        const long M = 1 + T / f;
        mem.resize(M, D);
        mem.row(0) = xd.row(0);
        for (long m = 1; m < M; ++m)
          for (long o = 0; o < D; ++o) {
            double acc = cb(o);
            for (long i = 0; i < D; ++i)
              for (long t = 0; t < f; ++t) acc += double(cw(o, i * f + t)) * xd((m - 1) * f + t, i);
            mem(m, o) = acc;
          }
      }
      const RefMatrix q = project(lq, xd), k = project(lk, mem), v = project(lv, mem);
      RefMatrix ctx(T, D);
      for (long i = 0; i < T; ++i)
        for (long h = 0; h < H; ++h) {
          std::vector<long> keys;
          for (long j = 0; j < mem.rows(); ++j) {
            // t2t bias: -1e9 where m * factor > q (+1e-3); local: own block causal + previous block.
            const bool vis = comp ? double(j * f) <= double(i) + 1e-3 : (j <= i && j >= (i / blk - 1) * blk);
            if (vis) keys.push_back(j);
          }
          attend(q, k, v, i, h, d, keys, ctx);
        }
      expect_near(y, project(lo, ctx), 2e-5);
    }
}

}  // namespace

// MemoryCompressedAttention against tensor2tensor itself: every fixture in tests/data/golden/t2t
// (written by tools/make_golden_t2t.py, which calls tensor2tensor 1.15.7's own
// multihead_self_attention_reduced(reduction_type="conv", add_mask=True) and
// multihead_attention(attention_type="local_mask_right") under TensorFlow 2.15 in float64).
#include "golden_util.hpp"

namespace {

// The one tensor whose name ends with `suffix` (the reference names carry t2t's variable scopes).
std::string t2t_name(const SafeTensors& st, const std::string& suffix) {
  std::string found;
  for (const auto& t : st.tensors())
    if (t.name.size() >= suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      EXPECT_TRUE(found.empty()) << "two tensors end with " << suffix;
      found = t.name;
    }
  if (found.empty()) throw std::runtime_error("fixture lacks a tensor ending with " + suffix);
  return found;
}

// TF dense kernel [in, out] -> Linear weight [out, in], no bias (compute_attention_component).
Linear<float> t2t_linear(const SafeTensors& st, const std::string& suffix, Index D, const std::string& name) {
  const Matrix<float> k = st.matrix<float>(t2t_name(st, suffix), D, D);
  return Linear<float>(Matrix<float>(k.transpose()), Vector<float>(), name);
}

}  // namespace

TEST(SparseLayers, MemoryCompressedTensor2TensorGolden) {
  using Mode = MemoryCompressedAttention::Mode;
  const auto names = eftest::golden_fixtures("t2t");
  ASSERT_GE(names.size(), 6u) << "fixtures missing in " << eftest::golden_dir("t2t");
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const SafeTensors st = SafeTensors::open(eftest::golden_dir("t2t") + "/" + n + ".safetensors");
    const Index D = std::stol(eftest::meta(st, "hidden")), H = std::stol(eftest::meta(st, "num_heads"));
    const bool comp = eftest::meta(st, "mode") == "compressed";
    ASSERT_TRUE(comp || eftest::meta(st, "mode") == "local_block");
    MemoryCompressedAttention::Config cfg{D, H, comp ? Mode::compressed : Mode::local_block};
    if (comp)
      cfg.factor = std::stol(eftest::meta(st, "factor"));
    else
      cfg.block_length = std::stol(eftest::meta(st, "block_length"));
    const Index f = cfg.factor;
    Matrix<float> cw;
    Vector<float> cb;
    if (comp) {  // TF conv2d kernel [1, f, in, out] -> weight(o, i * f + t) = kernel[0, t, i, o]
      const std::string kn = t2t_name(st, "conv2d/kernel");
      const auto& ki = st.info(kn);
      ASSERT_EQ(ki.shape, (std::vector<std::int64_t>{1, f, D, D}));
      const std::vector<float> k = st.to_vector<float>(kn);
      cw.resize(D, D * f);
      for (Index t = 0; t < f; ++t)
        for (Index i = 0; i < D; ++i)
          for (Index o = 0; o < D; ++o) cw(o, i * f + t) = k[static_cast<std::size_t>((t * D + i) * D + o)];
      cb = st.vector<float>(t2t_name(st, "conv2d/bias"), D);
    }
    const Linear<float> lq = t2t_linear(st, "/q/kernel", D, "q"), lk = t2t_linear(st, "/k/kernel", D, "k"),
                        lv = t2t_linear(st, "/v/kernel", D, "v"),
                        lo = t2t_linear(st, "/output_transform/kernel", D, "output_transform");
    const MemoryCompressedAttention layer(cfg, lq, lk, lv, lo, cw, cb, "t2t");
    const Matrix<float> x = st.matrix<float>("input.x", -1, D);
    const Index T = x.rows();
    const RefMatrix want = st.matrix<double>("output.y", T, D);  // stored F64: t2t ran in float64
    Matrix<float> y(T, D);
    Workspace<float> ws;
    layer.forward(x, y, ws);
    // Tolerance: the fixture's inputs and weights are float32 values (the reference computed on
    // exactly these in float64), so the difference is the layer's own float32 rounding. Its
    // longest chain of dot products (conv 3*16 terms, k/v 16, q 16, logits 4, softmax weighted sum
    // <= 8, output 16: about 110 terms) gives a worst-case forward error of ~110 u |intermediates|
    // with u = 6e-8, i.e. ~7e-6 relative to the output scale; 1e-5 * (1 + max|want|) covers that
    // and is still ~5 orders of magnitude below what a wrong mask, conv mapping, head split or
    // scale does (an O(1) change of the outputs; checked below for the local mask).
    const double scale = 1.0 + want.cwiseAbs().maxCoeff(), tol = 1e-5 * scale;
    const RefMatrix diff = (y.cast<double>() - want).cwiseAbs();
    double rel = 0;
    for (Index i = 0; i < T; ++i)
      for (Index j = 0; j < D; ++j) rel = std::max(rel, diff(i, j) / std::max(std::abs(want(i, j)), 1e-2));
    std::printf("  t2t %-18s T=%2ld max abs diff %.3e (tol %.1e), max rel diff %.3e (|y| floored at 1e-2), "
                "max|y| %.3f\n",
                n.c_str(), static_cast<long>(T), diff.maxCoeff(), tol, rel, want.cwiseAbs().maxCoeff());
    EXPECT_LE(diff.maxCoeff(), tol);
    // The fixture tells masks apart: plain causal attention (block_length >= T) differs from t2t's
    // local blocks by far more than tol once T >= 2 * block_length.
    if (!comp && T >= 2 * cfg.block_length) {
      MemoryCompressedAttention::Config full = cfg;
      full.block_length = T;
      Matrix<float> yf(T, D);
      MemoryCompressedAttention(full, lq, lk, lv, lo, cw, cb).forward(x, yf, ws);
      EXPECT_GT((yf.cast<double>() - want).cwiseAbs().maxCoeff(), 1e3 * tol);
    }
  }
}
