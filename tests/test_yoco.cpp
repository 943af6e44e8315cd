// GatedRetention (YOCO's self-decoder mixer) against a naive double-precision reference written out
// below from unilm YOCO's formulas (yoco/models/decoder/gate_retention.py, kernel/gate_recurrent.py:
// parallel_gate_retention), its chunkwise and recurrent forms against each other; the YOCO
// decoder-decoder: step-by-step decode == prefill, one global KV cache shared by the cross layers,
// memory accounting; error cases.
#include <eigenformer/retention/gated_retention.hpp>
#include <eigenformer/retention/yoco.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using eftest::max_abs_diff;

template <class F>
void expect_error(F f, ErrorKind kind, const std::string& needle, const std::string& layer) {
  try {
    f();
    ADD_FAILURE() << "no error, expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(layer), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------------
// The naive reference: double, T x T decay matrix (parallel_gate_retention), loops as the formulas read.
// ------------------------------------------------------------------------------------------------

// Interleaved rotation (flash-attn apply_rotary_emb, interleaved=True) by pos * theta_j,
// theta_j = 1 / theta^(j / (half - 1)).
void rotate(MatD& m, Index heads, Index d, Index pos0, double theta) {
  const Index half = d / 2;
  for (Index t = 0; t < m.rows(); ++t)
    for (Index h = 0; h < heads; ++h)
      for (Index j = 0; j < half; ++j) {
        const double lin = half > 1 ? double(j) / double(half - 1) : 0.0;
        const double a = double(pos0 + t) / std::pow(theta, lin);
        double& x0 = m(t, h * d + 2 * j);
        double& x1 = m(t, h * d + 2 * j + 1);
        const double r0 = x0 * std::cos(a) - x1 * std::sin(a);
        const double r1 = x0 * std::sin(a) + x1 * std::cos(a);
        x0 = r0;
        x1 = r1;
      }
}

double silu(double z) { return z / (1.0 + std::exp(-z)); }
double logsigmoid(double z) { return -std::log1p(std::exp(-z)); }

struct GRef {
  Index E = 0, H = 0;
  double eps = 1e-5, theta = 10000.0, normalizer = 16.0;
  MatD wq, wk, wv, wg, wgt, wo;  // PyTorch layout [out, in]

  Index d() const { return E / H; }

  MatD forward(const MatD& x) const {
    const Index T = x.rows();
    MatD q = x * wq.transpose(), k = x * wk.transpose(), v = x * wv.transpose(), g = x * wg.transpose();
    MatD gt = x * wgt.transpose();
    rotate(q, H, d(), 0, theta);
    rotate(k, H, d(), 0, theta);
    k /= std::sqrt(double(d()));
    MatD o = MatD::Zero(T, E);
    for (Index h = 0; h < H; ++h) {
      // cumsum of the log decays; mask(i, j) = exp(cs_i - cs_j) for j <= i
      std::vector<double> cs(static_cast<std::size_t>(T));
      double acc = 0;
      for (Index t = 0; t < T; ++t) cs[std::size_t(t)] = acc += logsigmoid(gt(t, h)) / normalizer;
      MatD D = MatD::Zero(T, T);
      for (Index i = 0; i < T; ++i)
        for (Index j = 0; j <= i; ++j) D(i, j) = std::exp(cs[std::size_t(i)] - cs[std::size_t(j)]);
      MatD qk = (q.middleCols(h * d(), d()) * k.middleCols(h * d(), d()).transpose()).cwiseProduct(D);
      o.middleCols(h * d(), d()) = qk * v.middleCols(h * d(), d());
    }
    for (Index t = 0; t < T; ++t)
      for (Index h = 0; h < H; ++h) {  // subln: RMSNorm(head_dim, elementwise_affine=False)
        auto seg = o.block(t, h * d(), 1, d());
        seg /= std::sqrt(seg.squaredNorm() / double(d()) + eps);
      }
    for (Index i = 0; i < o.size(); ++i) o.data()[i] *= silu(g.data()[i]);  // swiglu(g, o)
    return o * wo.transpose();
  }
};

struct GCase {
  Index E, H, T;
};

const std::vector<GCase>& gcases() {
  static const std::vector<GCase> c = {
      {16, 2, 13},  // d = 8
      {24, 3, 17},  // d = 8, three heads
      {8, 1, 9},    // one head
      {12, 3, 11},  // d = 4: below a SIMD packet
      {64, 2, 21},  // d = 32: SIMD multiple
      {40, 2, 10},  // d = 20: SIMD body + tail
  };
  return c;
}

MatD random_input(Index T, Index E, std::uint32_t salt) {
  auto g = eftest::rng(salt);
  return eftest::random_matrix<float>(T, E, g).cast<double>();
}

// Weights rounded to float so the float layer and the reference share them exactly. The gate
// logits get a wide spread (sigma ~4) so the decays differ a lot between tokens and heads.
GRef make_gref(const GCase& c, std::uint32_t salt, double normalizer = 16.0) {
  auto g = eftest::rng(salt);
  GRef r;
  r.E = c.E;
  r.H = c.H;
  r.normalizer = normalizer;
  auto w = [&](Index out, Index in, double sigma) {
    return eftest::random_matrix<float>(out, in, g, sigma).cast<double>().eval();
  };
  const double s = 1.0 / std::sqrt(double(c.E));
  r.wq = w(c.E, c.E, s);
  r.wk = w(c.E, c.E, s);
  r.wv = w(c.E, c.E, s);
  r.wg = w(c.E, c.E, s);
  r.wgt = w(c.H, c.E, 4.0 * s);
  r.wo = w(c.E, c.E, s);
  return r;
}

template <class T>
GatedRetention<T> make_glayer(const GRef& r, const std::string& name = "self_decoder.layers.0.mixer",
                              Index chunk = 256) {
  GatedRetentionConfig cfg;
  cfg.chunk_size = chunk;
  cfg.embed_dim = r.E;
  cfg.num_heads = r.H;
  cfg.norm_eps = r.eps;
  cfg.rope_theta = r.theta;
  cfg.gate_logit_normalizer = r.normalizer;
  auto lin = [](const MatD& w) { return Linear<T>(w.cast<T>(), Vector<T>()); };
  return GatedRetention<T>(cfg, lin(r.wq), lin(r.wk), lin(r.wv), lin(r.wg), lin(r.wgt), lin(r.wo), name);
}

enum class GForm { recurrent, chunkwise };

template <class T>
Matrix<T> grun(const GatedRetention<T>& m, const Matrix<T>& x, GForm form, Index chunk = 0) {
  Workspace<T> ws;
  Matrix<T> y(x.rows(), x.cols());
  if (form == GForm::recurrent) {
    auto st = m.make_state();
    m.forward_recurrent(x, y, st, ws);
  } else {
    m.forward_chunkwise(x, y, ws, chunk);
  }
  return y;
}

// ------------------------------------------------------------------------------------------------
// GatedRetention
// ------------------------------------------------------------------------------------------------

TEST(GatedRetention, BothFormsMatchReference) {
  std::uint32_t salt = 1000;
  for (const GCase& c : gcases()) {
    for (double normalizer : {16.0, 1.0}) {  // 1: strong decays, exp(G) far below 1 inside a chunk
      const GRef r = make_gref(c, salt++, normalizer);
      const MatD x = random_input(c.T, c.E, salt++);
      const MatD want = r.forward(x);
      const double scale = want.cwiseAbs().maxCoeff();
      const auto ld = make_glayer<double>(r);
      const auto lf = make_glayer<float>(r);
      const Matrix<double> xd = x;
      const Matrix<float> xf = x.cast<float>();
      EXPECT_LT(max_abs_diff(grun(ld, xd, GForm::recurrent), want), 1e-11 * scale) << "double recurrent E=" << c.E;
      EXPECT_LT(max_abs_diff(grun(lf, xf, GForm::recurrent).cast<double>(), want), 3e-5 * scale)
          << "float recurrent E=" << c.E << " H=" << c.H;
      // chunk sizes that divide T and ones that do not, one chunk, and chunk > T
      for (Index chunk : {Index(1), Index(2), Index(4), Index(5), c.T, c.T + 3}) {
        EXPECT_LT(max_abs_diff(grun(ld, xd, GForm::chunkwise, chunk), want), 1e-11 * scale)
            << "double chunk " << chunk << " E=" << c.E;
        EXPECT_LT(max_abs_diff(grun(lf, xf, GForm::chunkwise, chunk).cast<double>(), want), 3e-5 * scale)
            << "float chunk " << chunk << " E=" << c.E << " H=" << c.H;
      }
    }
  }
}

TEST(GatedRetention, ChunkwiseEqualsRecurrent) {
  const GCase c{32, 4, 40};
  const GRef r = make_gref(c, 1100);
  const auto lf = make_glayer<float>(r);
  const Matrix<float> x = random_input(c.T, c.E, 1101).cast<float>();
  const Matrix<float> rec = grun(lf, x, GForm::recurrent);
  const float scale = rec.cwiseAbs().maxCoeff();
  for (Index chunk : {Index(3), Index(8), Index(16), Index(40), Index(256)})
    EXPECT_LT((grun(lf, x, GForm::chunkwise, chunk) - rec).cwiseAbs().maxCoeff(), 2e-5f * scale) << chunk;
}

// A chunkwise prefill (state kept), more chunkwise rows, then recurrent decoding == one pass.
TEST(GatedRetention, ChunkwisePrefillThenRecurrentDecode) {
  const GCase c{24, 3, 19};
  const GRef r = make_gref(c, 1200);
  const MatD x = random_input(c.T, c.E, 1201);
  const MatD want = r.forward(x);
  const double scale = want.cwiseAbs().maxCoeff();
  const auto ld = make_glayer<double>(r);
  const auto lf = make_glayer<float>(r);
  for (Index split : {Index(1), Index(5), Index(8), Index(13)}) {
    for (Index chunk : {Index(2), Index(3), Index(4)}) {
      {
        Workspace<double> ws;
        auto st = ld.make_state();
        Matrix<double> xd = x, y(c.T, c.E);
        ld.forward_chunkwise(xd.topRows(split), y.topRows(split), st, ws, chunk);
        EXPECT_EQ(st.position, split);
        const Index mid = std::min(c.T, split + 3);
        ld.forward_chunkwise(xd.middleRows(split, mid - split), y.middleRows(split, mid - split), st, ws, chunk);
        for (Index t = mid; t < c.T; ++t) ld.forward_recurrent(xd.middleRows(t, 1), y.middleRows(t, 1), st, ws);
        EXPECT_EQ(st.position, c.T);
        EXPECT_LT(max_abs_diff(y, want), 1e-11 * scale) << "split " << split << " chunk " << chunk;
      }
      {
        Workspace<float> ws;
        auto st = lf.make_state();
        Matrix<float> xf = x.cast<float>(), y(c.T, c.E);
        lf.forward_chunkwise(xf.topRows(split), y.topRows(split), st, ws, chunk);
        for (Index t = split; t < c.T; ++t) lf.forward(xf.middleRows(t, 1), y.middleRows(t, 1), st, ws);
        EXPECT_LT(max_abs_diff(y.cast<double>(), want), 3e-5 * scale) << "split " << split << " chunk " << chunk;
      }
    }
  }
}

TEST(GatedRetention, ConstantStateNoDecodeAllocation) {
  const GCase c{64, 2, 12};
  const GRef r = make_gref(c, 1300);
  const auto lf = make_glayer<float>(r);
  const Matrix<float> x = random_input(c.T, c.E, 1301).cast<float>();
  Workspace<float> ws;
  auto st = lf.make_state();
  const std::size_t bytes = st.bytes();
  EXPECT_EQ(bytes, 2u * 32u * 32u * sizeof(float));
  Matrix<float> y(c.T, c.E);
  std::size_t allocs = 0;
  for (Index t = 0; t < c.T; ++t) {
    lf.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), st, ws);
    if (t == 0) allocs = ws.allocations();
    EXPECT_EQ(st.bytes(), bytes);
  }
  EXPECT_EQ(ws.allocations(), allocs) << "the decode path allocates after the first token";
  st.reset();
  EXPECT_EQ(st.position, 0);
  EXPECT_EQ(st.kv.cwiseAbs().maxCoeff(), 0.0f);
}

TEST(GatedRetention, TablesNamesAndParameters) {
  GatedRetentionConfig cfg;
  cfg.embed_dim = 64;
  cfg.num_heads = 4;  // head_dim 16: 8 angles
  cfg.rope_theta = 500000.0;
  GatedRetention<float> m(cfg, "self_decoder.layers.1.mixer");
  const std::vector<float>& f = m.rotary().inv_freq();
  ASSERT_EQ(f.size(), 8u);
  EXPECT_EQ(m.rotary().layout(), RopeLayout::interleaved);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[7], 1.0 / 500000.0, 1e-11);
  EXPECT_NEAR(f[3], 1.0 / std::pow(500000.0, 3.0 / 7.0), 1e-7);
  EXPECT_EQ(m.head_dim(), 16);
  EXPECT_EQ(m.parameters(), 5 * 64 * 64 + 4 * 64);
  EXPECT_EQ(m.gt_proj().weight().rows(), 4);
  EXPECT_EQ(m.config().chunk_size, 256);
  EXPECT_EQ(m.config().norm_eps, 1e-5);
  EXPECT_EQ(m.config().gate_logit_normalizer, 16.0);
}

TEST(GatedRetention, EmptyInputAndAliasing) {
  const GCase c{16, 2, 7};
  const GRef r = make_gref(c, 1400);
  const auto lf = make_glayer<float>(r);
  Workspace<float> ws;
  Matrix<float> x0(0, 16), y0(0, 16);
  auto st = lf.make_state();
  lf.forward_recurrent(x0, y0, st, ws);
  lf.forward_chunkwise(x0, y0, st, ws, 3);
  EXPECT_EQ(st.position, 0);
  Matrix<float> x = random_input(c.T, c.E, 1401).cast<float>();
  const Matrix<float> want = grun(lf, x, GForm::chunkwise, 3);
  lf.forward_chunkwise(x, x, ws, 3);  // y may be x
  EXPECT_TRUE(x == want);
}

TEST(GatedRetention, ConfigErrors) {
  auto make = [](Index E, Index H, double eps = 1e-5, Index chunk = 256, double norm = 16.0, double theta = 1e4) {
    GatedRetentionConfig c;
    c.embed_dim = E;
    c.num_heads = H;
    c.norm_eps = eps;
    c.chunk_size = chunk;
    c.gate_logit_normalizer = norm;
    c.rope_theta = theta;
    return [c] { GatedRetention<float> m(c, "gret"); };
  };
  const std::string L = "GatedRetention 'gret'";
  expect_error(make(0, 2), ErrorKind::config, "embed_dim = 0", L);
  expect_error(make(16, 0), ErrorKind::config, "num_heads = 0", L);
  expect_error(make(18, 4), ErrorKind::config, "embed_dim = 18 must be num_heads = 4 times an even head_dim", L);
  expect_error(make(12, 4), ErrorKind::config, "even head_dim", L);
  expect_error(make(16, 2, -1.0), ErrorKind::config, "norm_eps = -1", L);
  expect_error(make(16, 2, 1e-5, 0), ErrorKind::config, "chunk_size = 0", L);
  expect_error(make(16, 2, 1e-5, 256, 0.0), ErrorKind::config, "gate_logit_normalizer = 0", L);
  expect_error(make(16, 2, 1e-5, 256, 16.0, -1.0), ErrorKind::config, "rope_theta = -1", L);
  GatedRetentionConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  auto sq = [] { return Linear<float>({16, 16}); };
  expect_error([&] { GatedRetention<float> m(c, sq(), sq(), sq(), sq(), Linear<float>({16, 4}), sq(), "gret"); },
               ErrorKind::shape_mismatch, "gt_proj has shape [4, 16], expected [2, 16]", L);
}

TEST(GatedRetention, ShapeStateAndLoadErrors) {
  GatedRetentionConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  GatedRetention<float> m(c, "self_decoder.layers.3.mixer");
  const std::string L = "GatedRetention 'self_decoder.layers.3.mixer'";
  Workspace<float> ws;
  Matrix<float> x(5, 16), bad_x(5, 15), y(5, 16), bad_y(4, 16);
  x.setOnes();
  auto st = m.make_state();
  expect_error([&] { m.forward_recurrent(bad_x, y, st, ws); }, ErrorKind::shape_mismatch,
               "input x has shape [5, 15], expected [*, 16]", L);
  expect_error([&] { m.forward_chunkwise(x, bad_y, ws); }, ErrorKind::shape_mismatch,
               "output y has shape [4, 16], expected [5, 16]", L);
  expect_error([&] { m.forward_chunkwise(x, y, ws, -2); }, ErrorKind::invalid_argument, "chunk_size = -2", L);
  GatedRetentionConfig other = c;
  other.num_heads = 4;
  auto bad = GatedRetention<float>(other).make_state();
  expect_error([&] { m.forward_recurrent(x, y, bad, ws); }, ErrorKind::shape_mismatch,
               "state has 4 heads, kv [16, 4]; expected 2 heads, kv [16, 8]", L);
  expect_error([&] { m.forward_chunkwise(x, y, bad, ws, 2); }, ErrorKind::shape_mismatch, "state has 4 heads", L);
  st.position = -1;
  expect_error([&] { m.forward_recurrent(x, y, st, ws); }, ErrorKind::invalid_argument, "state position = -1", L);

  SafeTensorsWriter w;
  const Matrix<float> e = Matrix<float>::Constant(16, 16, 0.5f);
  w.add("mixer.q_proj.weight", e);
  w.add("mixer.k_proj.weight", e);
  w.add("mixer.v_proj.weight", e);
  w.add("mixer.g_proj.weight", e);
  w.add("mixer.gt_proj.weight", e);  // wrong shape: [16, 16] instead of [2, 16]
  const SafeTensors bad_st = SafeTensors::from_bytes(w.to_bytes());
  try {
    GatedRetention<float>::load(bad_st, "mixer", c);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::shape_mismatch) << err.what();
    EXPECT_NE(std::string(err.what()).find("mixer.gt_proj"), std::string::npos) << err.what();
  }
  SafeTensorsWriter w2;
  w2.add("mixer.q_proj.weight", e);
  const SafeTensors st2 = SafeTensors::from_bytes(w2.to_bytes());
  try {
    GatedRetention<float>::load(st2, "mixer", c);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::missing_weight) << err.what();
    EXPECT_NE(std::string(err.what()).find("mixer.k_proj.weight"), std::string::npos) << err.what();
  }
}

// ------------------------------------------------------------------------------------------------
// YOCO: a naive double reference of the whole decoder-decoder (yoco.py, cross_attention.py)
// ------------------------------------------------------------------------------------------------

using VecD = Eigen::VectorXd;

MatD rms(const MatD& x, const VecD& w, double eps) {
  MatD y = x;
  for (Index t = 0; t < x.rows(); ++t) {
    const double ms = x.row(t).squaredNorm() / double(x.cols());
    y.row(t) = (x.row(t) / std::sqrt(ms + eps)).cwiseProduct(w.transpose());
  }
  return y;
}

struct FfnRef {
  MatD fc1, gate, fc2;
  MatD forward(const MatD& z) const {
    MatD a = z * fc1.transpose();
    const MatD b = z * gate.transpose();
    for (Index i = 0; i < a.size(); ++i) a.data()[i] = silu(a.data()[i]) * b.data()[i];  // swiglu(fc1, gate)
    return a * fc2.transpose();
  }
};

struct YRef {
  YOCOConfig cfg;
  struct Self {
    GRef mixer;
    VecD n1, n2;
    FfnRef ffn;
    MatD wq, wk, wv, wo;  // sliding-window attention (cfg.sliding_window > 0)
  };
  struct Cross {
    MatD wq, wo;
    VecD n1, n2;
    FfnRef ffn;
  };
  std::vector<Self> self;
  std::vector<Cross> cross;
  VecD kv_norm, final_norm;
  MatD wk, wv;

  MatD forward(const MatD& x) const {
    const double eps = cfg.norm_eps;
    MatD h = x;
    for (const Self& l : self) {
      h += cfg.sliding() ? window_attention(l, rms(h, l.n1, eps)) : l.mixer.forward(rms(h, l.n1, eps));
      h += l.ffn.forward(rms(h, l.n2, eps));
    }
    const Index hd = cfg.head_dim(), H = cfg.n_attn_heads, G = cfg.n_attn_heads / cfg.n_attn_kv_heads;
    const MatD z = rms(h, kv_norm, eps);
    MatD K = z * wk.transpose();
    const MatD V = z * wv.transpose();
    rotate(K, cfg.n_attn_kv_heads, hd, 0, cfg.rope_theta);
    const Index T = x.rows();
    for (const Cross& l : cross) {
      MatD q = rms(h, l.n1, eps) * l.wq.transpose();
      rotate(q, H, hd, 0, cfg.rope_theta);
      MatD att = MatD::Zero(T, cfg.dim);
      for (Index hq = 0; hq < H; ++hq) {
        const Index kvh = hq / G;
        for (Index t = 0; t < T; ++t) {
          std::vector<double> s(static_cast<std::size_t>(t + 1));
          double mx = -1e300;
          for (Index j = 0; j <= t; ++j) {
            const double dot = q.row(t).segment(hq * hd, hd).dot(K.row(j).segment(kvh * hd, hd));
            s[std::size_t(j)] = dot / std::sqrt(double(hd));
            mx = std::max(mx, s[std::size_t(j)]);
          }
          double den = 0;
          for (auto& e : s) den += e = std::exp(e - mx);
          for (Index j = 0; j <= t; ++j)
            att.block(t, hq * hd, 1, hd) += s[std::size_t(j)] / den * V.block(j, kvh * hd, 1, hd);
        }
      }
      h += att * l.wo.transpose();
      h += l.ffn.forward(rms(h, l.n2, eps));
    }
    return rms(h, final_norm, eps);
  }

  // SlidingWindowAttention: n_self_heads heads, RoPE on q and k, query t sees keys (t - window, t].
  MatD window_attention(const Self& l, const MatD& z) const {
    const Index H = cfg.n_self_heads, d = cfg.self_head_dim(), T = z.rows(), W = cfg.sliding_window;
    MatD q = z * l.wq.transpose(), k = z * l.wk.transpose();
    const MatD v = z * l.wv.transpose();
    rotate(q, H, d, 0, cfg.rope_theta);
    rotate(k, H, d, 0, cfg.rope_theta);
    MatD att = MatD::Zero(T, cfg.dim);
    for (Index hh = 0; hh < H; ++hh)
      for (Index t = 0; t < T; ++t) {
        const Index j0 = std::max<Index>(0, t - W + 1);
        std::vector<double> s;
        for (Index j = j0; j <= t; ++j)
          s.push_back(q.row(t).segment(hh * d, d).dot(k.row(j).segment(hh * d, d)) / std::sqrt(double(d)));
        const double mx = *std::max_element(s.begin(), s.end());
        double den = 0;
        for (auto& e : s) den += e = std::exp(e - mx);
        for (Index j = j0; j <= t; ++j)
          att.block(t, hh * d, 1, d) += s[std::size_t(j - j0)] / den * v.block(j, hh * d, 1, d);
      }
    return att * l.wo.transpose();
  }
};

YOCOConfig small_config(Index n_cross = 2) {
  YOCOConfig c;
  c.dim = 32;
  c.hidden_dim = 48;
  c.n_self_layers = 2;
  c.n_cross_layers = n_cross;
  c.n_self_heads = 2;     // retention head_dim 16
  c.n_attn_heads = 4;     // attention head_dim 8
  c.n_attn_kv_heads = 2;  // GQA: 2 query heads per kv head
  c.chunk_size = 5;       // does not divide the test lengths
  return c;
}

YRef make_yref(const YOCOConfig& c, std::uint32_t salt) {
  auto g = eftest::rng(salt);
  auto w = [&](Index out, Index in) {
    return eftest::random_matrix<float>(out, in, g, 1.0 / std::sqrt(double(in))).cast<double>().eval();
  };
  auto nw = [&](Index n) {
    VecD v = eftest::random_matrix<float>(n, 1, g, 0.1).cast<double>();
    return VecD((v.array() + 1.0).cast<float>().cast<double>());
  };
  auto ffn = [&] { return FfnRef{w(c.hidden_dim, c.dim), w(c.hidden_dim, c.dim), w(c.dim, c.hidden_dim)}; };
  YRef r;
  r.cfg = c;
  for (Index i = 0; i < c.n_self_layers; ++i) {
    YRef::Self l;
    l.mixer = make_gref({c.dim, c.n_self_heads, 1}, salt + 100 + std::uint32_t(i));
    l.mixer.eps = c.norm_eps;
    l.mixer.theta = c.rope_theta;
    l.n1 = nw(c.dim);
    l.n2 = nw(c.dim);
    l.ffn = ffn();
    if (c.sliding()) {
      l.wq = w(c.dim, c.dim);
      l.wk = w(c.dim, c.dim);
      l.wv = w(c.dim, c.dim);
      l.wo = w(c.dim, c.dim);
    }
    r.self.push_back(l);
  }
  r.kv_norm = nw(c.dim);
  r.wk = w(c.kv_width(), c.dim);
  r.wv = w(c.kv_width(), c.dim);
  for (Index i = 0; i < c.n_cross_layers; ++i) {
    YRef::Cross l{w(c.dim, c.dim), w(c.dim, c.dim), nw(c.dim), nw(c.dim), ffn()};
    r.cross.push_back(l);
  }
  r.final_norm = nw(c.dim);
  return r;
}

YOCO make_yoco(const YRef& r) {
  const YOCOConfig& c = r.cfg;
  auto lin = [](const MatD& w) { return Linear<float>(w.cast<float>(), Vector<float>()); };
  auto norm = [&](const VecD& v) { return RMSNorm<float>(YOCO::norm_config(c), v.cast<float>()); };
  auto ffn = [&](const FfnRef& f) { return MLP<float>(YOCO::ffn_config(c), lin(f.fc1), lin(f.gate), lin(f.fc2)); };
  std::vector<YOCOSelfLayer> self;
  for (const auto& l : r.self) {
    if (c.sliding())
      self.push_back({GatedRetention<float>(), norm(l.n1), ffn(l.ffn), norm(l.n2),
                      MultiHeadAttention(YOCO::window_attention_config(c), lin(l.wq), lin(l.wk), lin(l.wv),
                                         lin(l.wo))});
    else
      self.push_back({make_glayer<float>(l.mixer, "mixer", c.chunk_size), norm(l.n1), ffn(l.ffn), norm(l.n2), {}});
  }
  std::vector<YOCOCrossLayer> cross;
  for (const auto& l : r.cross) cross.push_back({lin(l.wq), lin(l.wo), norm(l.n1), ffn(l.ffn), norm(l.n2)});
  return YOCO(c, std::move(self), norm(r.kv_norm), lin(r.wk), lin(r.wv), std::move(cross), norm(r.final_norm),
              "yoco");
}

Matrix<float> yoco_prefill(const YOCO& m, const Matrix<float>& x) {
  Workspace<float> ws;
  auto cache = m.make_cache(x.rows());
  Matrix<float> y(x.rows(), x.cols());
  m.forward(x, y, cache, ws);
  return y;
}

TEST(YOCO, PrefillMatchesReference) {
  for (Index n_cross : {Index(1), Index(2)}) {
    const YRef r = make_yref(small_config(n_cross), 2000 + std::uint32_t(n_cross));
    const YOCO m = make_yoco(r);
    const MatD x = random_input(23, 32, 2010);
    const MatD want = r.forward(x);
    const MatD got = yoco_prefill(m, x.cast<float>()).cast<double>();
    EXPECT_LT(max_abs_diff(got, want), 1e-4 * want.cwiseAbs().maxCoeff()) << "n_cross " << n_cross;
  }
}

TEST(YOCO, StepByStepDecodeEqualsPrefill) {
  const YRef r = make_yref(small_config(), 2100);
  const YOCO m = make_yoco(r);
  const Index T = 23;
  const Matrix<float> x = random_input(T, 32, 2101).cast<float>();
  const Matrix<float> full = yoco_prefill(m, x);
  const float scale = full.cwiseAbs().maxCoeff();
  Workspace<float> ws;
  // token by token from an empty cache
  {
    auto cache = m.make_cache(T);
    Matrix<float> y(T, 32);
    std::size_t allocs = 0;
    for (Index t = 0; t < T; ++t) {
      m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
      if (t == 1) allocs = ws.allocations();
    }
    EXPECT_EQ(cache.position, T);
    EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 2e-5f * scale);
    EXPECT_LE(ws.allocations(), allocs + 1) << "decode steps keep allocating";
  }
  // a prefill of 7 (last-token output only, as in generation), then decoding
  for (Index split : {Index(1), Index(7), Index(11)}) {
    auto cache = m.make_cache(T + 2);
    Matrix<float> last(1, 32), y(T, 32);
    m.forward(x.topRows(split), last, cache, ws);
    EXPECT_LT((last - full.row(split - 1)).cwiseAbs().maxCoeff(), 2e-5f * scale) << split;
    for (Index t = split; t < T; ++t) m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
    EXPECT_LT((y.bottomRows(T - split) - full.bottomRows(T - split)).cwiseAbs().maxCoeff(), 2e-5f * scale) << split;
    EXPECT_EQ(cache.position, T);
  }
  // two prefills in a row (chunkwise continuation of the retention states and of the K/V)
  {
    auto cache = m.make_cache(T);
    Matrix<float> y(T, 32);
    m.forward(x.topRows(9), y.topRows(9), cache, ws);
    m.forward(x.bottomRows(T - 9), y.bottomRows(T - 9), cache, ws);
    EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 2e-5f * scale);
    cache.reset();
    EXPECT_EQ(cache.position, 0);
    m.forward(x, y, cache, ws);
    EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 1e-6f * scale);
  }
}

// The cache holds the retention states and ONE K/V pair per token: more cross layers, same bytes.
TEST(YOCO, CacheDoesNotGrowWithCrossLayers) {
  const std::int64_t ctx = 1000;
  const YOCOConfig c1 = small_config(1);
  const std::size_t want = yoco_memory(c1, ctx).total();
  // states: 2 layers x 2 heads x 16 x 16 floats; K/V: 2 x ctx x 2 kv heads x 8 floats
  EXPECT_EQ(yoco_memory(c1, ctx).state_bytes, 2u * 2u * 16u * 16u * 4u);
  EXPECT_EQ(yoco_memory(c1, ctx).kv_cache_bytes, 2u * 1000u * 16u * 4u);
  for (Index n_cross : {Index(1), Index(2), Index(5), Index(12)}) {
    const YOCOConfig c = small_config(n_cross);
    EXPECT_EQ(yoco_memory(c, ctx).total(), want) << n_cross;
    EXPECT_EQ(standard_decoder_memory(c, ctx).kv_cache_bytes,
              std::size_t(2 + n_cross) * 2u * 1000u * 16u * 4u) << n_cross;
    const YOCO m(c);
    const auto cache = m.make_cache(ctx);
    EXPECT_EQ(cache.bytes(), want) << n_cross;
  }
  // The K/V grows linearly with the context, the states do not.
  EXPECT_EQ(yoco_memory(c1, 2 * ctx).state_bytes, yoco_memory(c1, ctx).state_bytes);
  EXPECT_EQ(yoco_memory(c1, 2 * ctx).kv_cache_bytes, 2 * yoco_memory(c1, ctx).kv_cache_bytes);
  EXPECT_EQ(yoco_memory(c1, ctx, 2).kv_cache_bytes, yoco_memory(c1, ctx).kv_cache_bytes / 2);  // f16 K/V
  // The reference's layout: n_layers / 2 of each.
  const YOCOConfig a = YOCOConfig::from_args(4096, 32, 14336, 32, 32, 8);
  EXPECT_EQ(a.n_self_layers, 16);
  EXPECT_EQ(a.n_cross_layers, 16);
  EXPECT_EQ(a.head_dim(), 128);
  EXPECT_EQ(a.kv_width(), 1024);
}

// The reference's state dict of r under `prefix` (YOCO module names).
std::vector<std::uint8_t> yoco_checkpoint(const YRef& r, const std::string& prefix) {
  SafeTensorsWriter w;
  auto add = [&](const std::string& n, const auto& v) {
    w.add(join_name(prefix, n) + ".weight", v.template cast<float>().eval());
  };
  auto add_block = [&](const std::string& p, const VecD& n1, const VecD& n2, const FfnRef& f) {
    add(p + ".mixer_layer_norm", n1);
    add(p + ".final_layer_norm", n2);
    add(p + ".ffn.fc1", f.fc1);
    add(p + ".ffn.gate", f.gate);
    add(p + ".ffn.fc2", f.fc2);
  };
  for (std::size_t i = 0; i < r.self.size(); ++i) {
    const std::string p = "self_decoder.layers." + std::to_string(i);
    const YRef::Self& l = r.self[i];
    const bool sw = r.cfg.sliding();
    add(p + ".mixer.q_proj", sw ? l.wq : l.mixer.wq);
    add(p + ".mixer.k_proj", sw ? l.wk : l.mixer.wk);
    add(p + ".mixer.v_proj", sw ? l.wv : l.mixer.wv);
    add(p + ".mixer.out_proj", sw ? l.wo : l.mixer.wo);
    if (!sw) {
      add(p + ".mixer.g_proj", l.mixer.wg);
      add(p + ".mixer.gt_proj", l.mixer.wgt);
    }
    add_block(p, l.n1, l.n2, l.ffn);
  }
  add("cross_decoder.kv_layer_norm", r.kv_norm);
  add("cross_decoder.k_proj", r.wk);
  add("cross_decoder.v_proj", r.wv);
  for (std::size_t i = 0; i < r.cross.size(); ++i) {
    const std::string p = "cross_decoder.layers." + std::to_string(i);
    add(p + ".mixer.q_proj", r.cross[i].wq);
    add(p + ".mixer.out_proj", r.cross[i].wo);
    add_block(p, r.cross[i].n1, r.cross[i].n2, r.cross[i].ffn);
  }
  add("layer_norm", r.final_norm);
  return w.to_bytes();
}

TEST(YOCO, LoadFromCheckpointNames) {
  const YRef r = make_yref(small_config(), 2200);
  const YOCO m = make_yoco(r);
  const SafeTensors st = SafeTensors::from_bytes(yoco_checkpoint(r, "model"));
  const YOCO loaded = YOCO::load(st, r.cfg, "model");
  EXPECT_EQ(loaded.parameters(), m.parameters());
  const Matrix<float> x = random_input(9, 32, 2201).cast<float>();
  EXPECT_TRUE(yoco_prefill(loaded, x) == yoco_prefill(m, x));
  // a missing tensor is named (the same weights under another prefix)
  const SafeTensors st2 = SafeTensors::from_bytes(yoco_checkpoint(r, "other"));
  try {
    YOCO::load(st2, r.cfg, "model");
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::missing_weight) << err.what();
    EXPECT_NE(std::string(err.what()).find("model.self_decoder.layers.0.mixer.q_proj.weight"), std::string::npos)
        << err.what();
  }
}

TEST(YOCO, Errors) {
  const std::string L = "YOCO 'yoco'";
  auto make = [](YOCOConfig c) { return [c] { YOCO m(c, "yoco"); }; };
  YOCOConfig c = small_config();
  c.n_attn_kv_heads = 3;
  expect_error(make(c), ErrorKind::config, "n_attn_heads = 4 must be a multiple of n_attn_kv_heads = 3", L);
  c = small_config();
  c.n_self_heads = 3;
  expect_error(make(c), ErrorKind::config, "dim = 32 must be n_self_heads = 3 times an even head_dim", L);
  c = small_config();
  c.n_attn_heads = 32;  // head_dim 1
  expect_error(make(c), ErrorKind::config, "n_attn_heads = 32 times an even head_dim", L);
  c = small_config();
  c.hidden_dim = 0;
  expect_error(make(c), ErrorKind::config, "hidden_dim = 0", L);
  c = small_config();
  c.n_cross_layers = -1;
  expect_error(make(c), ErrorKind::config, "n_cross_layers = -1", L);

  const YRef r = make_yref(small_config(), 2300);
  const YOCO m = make_yoco(r);
  Workspace<float> ws;
  Matrix<float> x = random_input(6, 32, 2301).cast<float>(), y(6, 32), bad_x(6, 31), bad_y(3, 32);
  auto cache = m.make_cache(8);
  expect_error([&] { m.forward(bad_x, y, cache, ws); }, ErrorKind::shape_mismatch,
               "input x has shape [6, 31], expected [*, 32]", L);
  expect_error([&] { m.forward(x, bad_y, cache, ws); }, ErrorKind::shape_mismatch,
               "output y has shape [3, 32], expected [6, 32] or [1, 32]", L);
  m.forward(x, y, cache, ws);
  expect_error([&] { m.forward(x, y, cache, ws); }, ErrorKind::capacity,
               "cache holds 8 tokens; 6 used, 6 more do not fit", L);
  EXPECT_EQ(cache.position, 6);  // a failed call leaves the cache as it was
  auto wrong = YOCO([] {
                 YOCOConfig k = small_config();
                 k.n_attn_kv_heads = 4;
                 return k;
               }()).make_cache(8);
  expect_error([&] { m.forward(x, y, wrong, ws); }, ErrorKind::shape_mismatch,
               "cache has 2 self-decoder states, 0 window caches and K/V [8, 32]; expected 2 states of 2 heads and "
               "K/V [*, 16]",
               L);
  // from parts: a misshaped shared projection is named
  expect_error(
      [&] {
        YOCO bad(small_config(0), {}, RMSNorm<float>({32, 1e-5, false}), Linear<float>({32, 16}),
                 Linear<float>({32, 16}), {}, RMSNorm<float>({32, 1e-5, false}), "yoco");
      },
      ErrorKind::config, "got 0 self-decoder and 0 cross-decoder layers, expected n_self_layers = 2", L);
  expect_error(
      [&] {
        YOCOConfig k = small_config(0);
        k.n_self_layers = 0;
        YOCO bad(k, {}, RMSNorm<float>({32, 1e-5, false}), Linear<float>({32, 8}), Linear<float>({32, 16}), {},
                 RMSNorm<float>({32, 1e-5, false}), "yoco");
      },
      ErrorKind::shape_mismatch, "cross_decoder.k_proj has shape [8, 32], expected [16, 32]", L);
}


}  // namespace

// ------------------------------------------------------------------------------------------------
// YOCO with the sliding-window-attention self-decoder (YOCOArgs.sliding_window)
// ------------------------------------------------------------------------------------------------

YOCOConfig window_config(Index window, Index n_cross = 2) {
  YOCOConfig c = small_config(n_cross);
  c.sliding_window = window;
  return c;
}

TEST(YOCOSlidingWindow, PrefillMatchesReference) {
  for (Index window : {Index(1), Index(4), Index(7), Index(40)}) {
    const YRef r = make_yref(window_config(window), 2400 + std::uint32_t(window));
    const YOCO m = make_yoco(r);
    const MatD x = random_input(23, 32, 2410);
    const MatD want = r.forward(x);
    const MatD got = yoco_prefill(m, x.cast<float>()).cast<double>();
    EXPECT_LT(max_abs_diff(got, want), 1e-4 * want.cwiseAbs().maxCoeff()) << "window " << window;
  }
}

TEST(YOCOSlidingWindow, DecodeEqualsPrefillWithABoundedWindowCache) {
  const Index T = 23, window = 4;
  const YRef r = make_yref(window_config(window), 2500);
  const YOCO m = make_yoco(r);
  const Matrix<float> x = random_input(T, 32, 2501).cast<float>();
  const Matrix<float> full = yoco_prefill(m, x);
  const float scale = full.cwiseAbs().maxCoeff();
  Workspace<float> ws;
  // token by token; prefill longer than the window, then decoding; several prefills in a row
  for (Index split : {Index(1), Index(3), Index(9), Index(15)}) {
    auto cache = m.make_cache(T);
    ASSERT_EQ(cache.self_kv.size(), 2u);
    EXPECT_TRUE(cache.self_states.empty());
    Matrix<float> y(T, 32);
    m.forward(x.topRows(split), y.topRows(split), cache, ws);
    for (Index t = split; t < T; t += 2) {
      const Index n = std::min<Index>(2, T - t);
      m.forward(x.middleRows(t, n), y.middleRows(t, n), cache, ws);
    }
    EXPECT_LT((y - full).cwiseAbs().maxCoeff(), 2e-5f * scale) << split;
    EXPECT_EQ(cache.position, T);
    for (const auto& kv : cache.self_kv) EXPECT_EQ(kv.size(), window);  // only the newest window tokens
  }
}

// The self-decoder's window caches are bounded; the global K/V is the only part that grows, once.
TEST(YOCOSlidingWindow, MemoryIsBoundedAndIndependentOfCrossLayers) {
  const Index window = 16;
  const YOCOConfig c = window_config(window);
  for (std::int64_t ctx : {std::int64_t(8), std::int64_t(1000), std::int64_t(4000)}) {
    const DecoderMemory mem = yoco_memory(c, ctx);
    EXPECT_EQ(mem.state_bytes, 0u);
    EXPECT_EQ(mem.window_cache_bytes, 2u * 16u * 2u * 32u * 4u);  // layers x window x (K + V) x dim x float
    EXPECT_EQ(mem.kv_cache_bytes, 2u * std::size_t(ctx) * 16u * 4u);
    for (Index n_cross : {Index(1), Index(6)}) {
      const YOCO m(window_config(window, n_cross));
      EXPECT_EQ(m.make_cache(ctx).bytes(), mem.total()) << ctx << " " << n_cross;
    }
  }
}

TEST(YOCOSlidingWindow, LoadNamesAndErrors) {
  const YRef r = make_yref(window_config(5), 2600);
  const YOCO m = make_yoco(r);
  const SafeTensors st = SafeTensors::from_bytes(yoco_checkpoint(r, ""));
  const YOCO loaded = YOCO::load(st, r.cfg);
  EXPECT_EQ(loaded.parameters(), m.parameters());
  EXPECT_EQ(m.parameters(), 2 * (4 * 32 * 32 + 3 * 32 * 48 + 64) + 2 * 32 * 16 + 32 +
                                2 * (2 * 32 * 32 + 3 * 32 * 48 + 64) + 32);
  const Matrix<float> x = random_input(9, 32, 2601).cast<float>();
  EXPECT_TRUE(yoco_prefill(loaded, x) == yoco_prefill(m, x));

  const std::string L = "YOCO 'yoco'";
  YOCOConfig bad = window_config(5);
  bad.sliding_window = -2;
  expect_error([&] { YOCO b(bad, "yoco"); }, ErrorKind::config, "sliding_window = -2 must be >= 0", L);
  // a gated-retention cache for a sliding-window model (and the other way round) is refused
  Workspace<float> ws;
  Matrix<float> y(9, 32);
  auto wrong = make_yoco(make_yref(small_config(), 2602)).make_cache(16);
  expect_error([&] { m.forward(x, y, wrong, ws); }, ErrorKind::shape_mismatch,
               "cache has 2 self-decoder states, 0 window caches", "YOCO");
  auto wrong2 = m.make_cache(16);
  const YOCO g = make_yoco(make_yref(small_config(), 2603));
  expect_error([&] { g.forward(x, y, wrong2, ws); }, ErrorKind::shape_mismatch,
               "cache has 0 self-decoder states, 2 window caches", "YOCO");
}
