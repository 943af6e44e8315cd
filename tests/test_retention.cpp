// MultiScaleRetention (RetNet) against a naive double-precision reference written out below from
// torchscale 0.3.0's formulas (component/multiscale_retention.py, architecture/retnet.py
// RetNetRelPos), and its three forms against each other. Golden fixtures from the real torchscale
// module: test_retention_golden.cpp.
#include <eigenformer/kernels/retention.hpp>
#include <eigenformer/retention/multiscale_retention.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ------------------------------------------------------------------------------------------------
// The naive reference: every quantity in double, T x T matrices, loops as the formulas read.
// ------------------------------------------------------------------------------------------------

enum class Form { parallel, recurrent, chunkwise };

struct Reference {
  Index E = 0, V = 0, H = 0;
  double eps = 1e-6;
  MatD wq, wk, wv, wg, wo;  // PyTorch layout [out, in]

  Index dk() const { return E / H; }
  Index dv() const { return V / H; }
  double gamma(Index h) const { return 1.0 - std::pow(2.0, -5.0 - double(h)); }
  double angle(Index j) const {
    const Index half = dk() / 2;
    const double lin = half > 1 ? double(j) / double(half - 1) : 0.0;
    return 1.0 / std::pow(10000.0, lin);
  }

  // theta_shift: x * cos + rotate_every_two(x) * sin, rotate_every_two(x)[2j] = -x[2j+1], [2j+1] = x[2j].
  void rotate(MatD& m, Index pos0) const {
    for (Index t = 0; t < m.rows(); ++t)
      for (Index h = 0; h < H; ++h)
        for (Index j = 0; j < dk() / 2; ++j) {
          const double a = double(pos0 + t) * angle(j);
          double& x0 = m(t, h * dk() + 2 * j);
          double& x1 = m(t, h * dk() + 2 * j + 1);
          const double r0 = x0 * std::cos(a) - x1 * std::sin(a);
          const double r1 = x1 * std::cos(a) + x0 * std::sin(a);
          x0 = r0;
          x1 = r1;
        }
  }

  // Pre-norm retention output o [T, V] of one form.
  MatD retention(const MatD& x, Form form, Index chunk) const {
    const Index T = x.rows();
    MatD q = x * wq.transpose(), k = x * wk.transpose() / std::sqrt(double(dk())), v = x * wv.transpose();
    rotate(q, 0);
    rotate(k, 0);
    MatD o = MatD::Zero(T, V);
    for (Index h = 0; h < H; ++h) {
      const double g = gamma(h);
      auto qh = q.middleCols(h * dk(), dk());
      auto kh = k.middleCols(h * dk(), dk());
      auto vh = v.middleCols(h * dv(), dv());
      if (form == Form::parallel) {
        MatD D = MatD::Zero(T, T);
        for (Index i = 0; i < T; ++i) {
          double row = 0;
          for (Index j = 0; j <= i; ++j) row += std::pow(g, double(i - j));
          for (Index j = 0; j <= i; ++j) D(i, j) = std::pow(g, double(i - j)) / std::sqrt(row);
        }
        MatD qk = (qh * kh.transpose()).cwiseProduct(D);
        for (Index i = 0; i < T; ++i) qk.row(i) /= std::max(1.0, std::abs(qk.row(i).sum()));
        o.middleCols(h * dv(), dv()) = qk * vh;
      } else if (form == Form::recurrent) {
        MatD kv = MatD::Zero(dk(), dv());
        double scale = 0;
        for (Index t = 0; t < T; ++t) {
          const MatD kvt = kh.row(t).transpose() * vh.row(t);
          if (t == 0) {
            kv = kvt;
            scale = 1;
          } else {
            const double next = scale * g + 1;
            kv = kv * (std::sqrt(scale) * g / std::sqrt(next)) + kvt / std::sqrt(next);
            scale = next;
          }
          o.block(t, h * dv(), 1, dv()) = qh.row(t) * kv;
        }
      } else {
        // torchscale's chunk_recurrent_forward on the input padded with zero rows to a multiple of B.
        const Index B = chunk, nc = (T + B - 1) / B, Tp = nc * B;
        MatD qp = MatD::Zero(Tp, dk()), kp = MatD::Zero(Tp, dk()), vp = MatD::Zero(Tp, dv());
        qp.topRows(T) = qh;
        kp.topRows(T) = kh;
        vp.topRows(T) = vh;
        MatD mask = MatD::Zero(B, B);
        for (Index i = 0; i < B; ++i)
          for (Index j = 0; j <= i; ++j) mask(i, j) = std::pow(g, double(i - j));
        std::vector<double> scale(static_cast<std::size_t>(B));
        for (Index i = 0; i < B; ++i) scale[size_t(i)] = std::sqrt(mask.row(i).sum());
        const double last_sum = mask.row(B - 1).sum();
        MatD inner_mask = mask;
        for (Index i = 0; i < B; ++i) inner_mask.row(i) /= scale[size_t(i)];
        std::vector<double> value_inner_decay(static_cast<std::size_t>(B)), query_inner_decay(static_cast<std::size_t>(B));
        for (Index j = 0; j < B; ++j) value_inner_decay[size_t(j)] = mask(B - 1, j) / last_sum;
        for (Index i = 0; i < B; ++i)
          query_inner_decay[size_t(i)] = std::pow(g, double(i + 1)) / (scale[size_t(i)] / last_sum);
        const double cross_decay = std::pow(g, double(B));
        MatD kv_state = MatD::Zero(dk(), dv());
        double kv_scale = 1;
        for (Index c = 0; c < nc; ++c) {
          auto qc = qp.middleRows(c * B, B);
          auto kc = kp.middleRows(c * B, B);
          auto vc = vp.middleRows(c * B, B);
          MatD qk = (qc * kc.transpose()).cwiseProduct(inner_mask);
          std::vector<double> inner_scale(static_cast<std::size_t>(B));
          for (Index i = 0; i < B; ++i) {
            inner_scale[size_t(i)] = std::max(1.0, qk.row(i).cwiseAbs().sum());
            qk.row(i) /= inner_scale[size_t(i)];
          }
          const MatD inner_output = qk * vc;
          MatD vd = vc;
          for (Index j = 0; j < B; ++j) vd.row(j) *= value_inner_decay[size_t(j)];
          const MatD kv = kc.transpose() * vd;
          const MatD kv_recurrent = kv_state / kv_scale;
          const double cross_scale = kv_scale;
          kv_state = kv_state * cross_decay + kv;
          kv_scale = std::max(1.0, kv_state.cwiseAbs().colwise().sum().maxCoeff());
          MatD qd = qc;
          for (Index i = 0; i < B; ++i) qd.row(i) *= query_inner_decay[size_t(i)];
          const MatD cross_output = qd * kv_recurrent;
          for (Index i = 0; i < B && c * B + i < T; ++i) {
            const double all = std::max(inner_scale[size_t(i)], cross_scale);
            o.block(c * B + i, h * dv(), 1, dv()) =
                inner_output.row(i) / (all / inner_scale[size_t(i)]) + cross_output.row(i) / (all / cross_scale);
          }
        }
      }
    }
    return o;
  }

  // The whole layer: group norm (RMS per head, no affine), swish gate, out_proj.
  MatD forward(const MatD& x, Form form, Index chunk = 4) const {
    MatD o = retention(x, form, chunk);
    const MatD g = x * wg.transpose();
    for (Index t = 0; t < x.rows(); ++t)
      for (Index h = 0; h < H; ++h) {
        auto seg = o.block(t, h * dv(), 1, dv());
        const double ms = seg.squaredNorm() / double(dv());
        seg /= std::sqrt(ms + eps);
      }
    for (Index i = 0; i < o.size(); ++i) {
      const double gi = g.data()[i];
      o.data()[i] *= gi / (1.0 + std::exp(-gi));
    }
    return o * wo.transpose();
  }
};

struct Case {
  Index E, V, H, T;
};

Reference make_reference(const Case& c, double eps, std::uint32_t salt) {
  auto g = eftest::rng(salt);
  Reference r;
  r.E = c.E;
  r.V = c.V;
  r.H = c.H;
  r.eps = eps;
  // Round the weights to float so the float layer and the reference share them exactly.
  auto w = [&](Index out, Index in, double sigma) {
    return eftest::random_matrix<float>(out, in, g, sigma).cast<double>().eval();
  };
  r.wq = w(c.E, c.E, 1.0 / std::sqrt(double(c.E)));
  r.wk = w(c.E, c.E, 1.0 / std::sqrt(double(c.E)));
  r.wv = w(c.V, c.E, 1.0 / std::sqrt(double(c.E)));
  r.wg = w(c.V, c.E, 1.0 / std::sqrt(double(c.E)));
  r.wo = w(c.E, c.V, 1.0 / std::sqrt(double(c.V)));
  return r;
}

template <class T>
MultiScaleRetention<T> make_layer(const Reference& r) {
  RetentionConfig cfg;
  cfg.embed_dim = r.E;
  cfg.value_dim = r.V;
  cfg.num_heads = r.H;
  cfg.layernorm_eps = r.eps;
  auto lin = [](const MatD& w) { return Linear<T>(w.cast<T>(), Vector<T>()); };
  return MultiScaleRetention<T>(cfg, lin(r.wq), lin(r.wk), lin(r.wv), lin(r.wg), lin(r.wo), "layers.0.retention");
}

MatD random_input(Index T, Index E, std::uint32_t salt) {
  auto g = eftest::rng(salt);
  return eftest::random_matrix<float>(T, E, g).cast<double>();
}

template <class T>
Matrix<T> run(const MultiScaleRetention<T>& m, const Matrix<T>& x, Form form, Index chunk = 0) {
  Workspace<T> ws;
  Matrix<T> y(x.rows(), x.cols());
  if (form == Form::parallel) {
    m.forward_parallel(x, y, ws);
  } else if (form == Form::recurrent) {
    auto st = m.make_state();
    m.forward_recurrent(x, y, st, ws);
  } else {
    m.forward_chunkwise(x, y, ws, chunk);
  }
  return y;
}

using eftest::max_abs_diff;

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {16, 16, 2, 13},   // value_dim == embed_dim
      {24, 39, 3, 17},   // value_dim != embed_dim, dk = 8, dv = 13: not a SIMD multiple
      {32, 64, 4, 20},   // value_dim = 2 embed_dim (RetNet's default ratio)
      {8, 12, 1, 9},     // one head, dk = 8
      {12, 6, 3, 11},    // dk = 4, dv = 2
  };
  return c;
}

// ------------------------------------------------------------------------------------------------
// Kernel
// ------------------------------------------------------------------------------------------------

TEST(RetentionKernel, StepMatchesScalarTwin) {
  auto g = eftest::rng(1);
  for (std::size_t dk : {1, 2, 7, 8, 16, 33}) {
    for (std::size_t dv : {1, 3, 8, 9, 31, 32, 33, 64, 70}) {
      const std::size_t ld = dv + 3;
      auto q = eftest::normal(dk, 1, g), k = eftest::normal(dk, 1, g), v = eftest::normal(dv, 1, g);
      auto S = eftest::normal(dk * ld, 1, g);
      std::vector<double> Sd = eftest::to_double(S), od(dv);
      std::vector<float> o(dv);
      const float a = 0.9f, b = 0.3f;
      kernels::retention_step(q.data(), k.data(), v.data(), S.data(), ld, o.data(), dk, dv, a, b);
      const auto qd = eftest::to_double(q), kd = eftest::to_double(k), vd = eftest::to_double(v);
      kernels::ref::retention_step(qd.data(), kd.data(), vd.data(), Sd.data(), ld, od.data(), dk, dv, double(a),
                                   double(b));
      for (std::size_t r = 0; r < dk; ++r)
        for (std::size_t c = 0; c < ld; ++c) {
          const double want = Sd[r * ld + c];
          // Updated entries: two roundings of terms of size <= |a s| + |b k v|; padding untouched.
          EXPECT_NEAR(S[r * ld + c], want, 4e-7 * (1 + std::abs(want))) << dk << " " << dv << " " << r << " " << c;
        }
      double mag = 0;
      for (std::size_t r = 0; r < dk; ++r)
        for (std::size_t c = 0; c < dv; ++c) mag = std::max(mag, std::abs(qd[r] * Sd[r * ld + c]));
      for (std::size_t c = 0; c < dv; ++c)
        EXPECT_NEAR(o[c], od[c], 1e-6 * double(dk) * (1 + mag)) << dk << " " << dv << " " << c;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Layer against the reference
// ------------------------------------------------------------------------------------------------

TEST(MultiScaleRetention, EachFormMatchesReference) {
  std::uint32_t salt = 100;
  for (const Case& c : cases()) {
    const Reference r = make_reference(c, 1e-6, salt++);
    const MatD x = random_input(c.T, c.E, salt++);
    const auto lf = make_layer<float>(r);
    const auto ld = make_layer<double>(r);
    const Matrix<float> xf = x.cast<float>();
    for (Form form : {Form::parallel, Form::recurrent, Form::chunkwise}) {
      for (Index chunk : {Index(1), Index(4), Index(5), c.T, c.T + 3}) {
        if (form != Form::chunkwise && chunk != 1) continue;
        const MatD want = r.forward(x, form, chunk);
        const double scale = want.cwiseAbs().maxCoeff();
        const MatD got_d = run(ld, Matrix<double>(x), form, chunk);
        EXPECT_LT(max_abs_diff(got_d, want), 1e-11 * scale) << "double, form " << int(form) << " chunk " << chunk;
        const MatD got_f = run(lf, xf, form, chunk).cast<double>();
        EXPECT_LT(max_abs_diff(got_f, want), 2e-5 * scale) << "float, form " << int(form) << " chunk " << chunk
                                                             << " E=" << c.E << " V=" << c.V << " H=" << c.H;
      }
    }
  }
}

// With eps = 0 the group norm removes every per-(token, head) factor, so the forms agree to rounding.
TEST(MultiScaleRetention, FormsAgreeWithZeroEps) {
  std::uint32_t salt = 200;
  for (const Case& c : cases()) {
    const Reference r = make_reference(c, 0.0, salt++);
    const MatD x = random_input(c.T, c.E, salt++);
    const auto ld = make_layer<double>(r);
    const auto lf = make_layer<float>(r);
    const Matrix<double> xd = x;
    const Matrix<float> xf = x.cast<float>();
    const MatD par_d = run(ld, xd, Form::parallel);
    EXPECT_LT(max_abs_diff(run(lf, xf, Form::parallel).cast<double>(), par_d), 2e-5 * r.wo.cwiseAbs().sum());
    const double scale = par_d.cwiseAbs().maxCoeff();
    EXPECT_LT(max_abs_diff(run(ld, xd, Form::recurrent), par_d), 1e-12 * scale);
    EXPECT_LT(max_abs_diff(run(lf, xf, Form::recurrent).cast<double>(), par_d), 2e-5 * scale);
    for (Index chunk : {Index(1), Index(2), Index(3), Index(4), Index(7), c.T, c.T + 5}) {
      EXPECT_LT(max_abs_diff(run(ld, xd, Form::chunkwise, chunk), par_d), 1e-12 * scale) << "chunk " << chunk;
      EXPECT_LT(max_abs_diff(run(lf, xf, Form::chunkwise, chunk).cast<double>(), par_d), 2e-5 * scale)
          << "chunk " << chunk;
    }
  }
}

// With the default eps = 1e-6 the forms differ: each scales a head's pre-norm output differently
// (parallel: / max(1, |sum qk|); recurrent: none; chunkwise: / max(inner, cross) scale, with S_i of
// the position in the chunk instead of the sequence), and o / sqrt(mean(o^2) + eps) depends on that
// scale through eps (torchscale issue #40). The difference is about eps / (2 mean(o^2)) relative per
// row; with unit-variance inputs and these weights mean(o^2) is >~ 1e-3, so the bound below is
// 1e-4 of the output scale (measured: <= 2.1e-6 at the default seed).
TEST(MultiScaleRetention, FormsAgreeWithDefaultEpsWithinBound) {
  std::uint32_t salt = 300;
  for (const Case& c : cases()) {
    const Reference r = make_reference(c, 1e-6, salt++);
    const MatD x = random_input(c.T, c.E, salt++);
    const auto ld = make_layer<double>(r);
    const Matrix<double> xd = x;
    const MatD par = run(ld, xd, Form::parallel);
    const double scale = par.cwiseAbs().maxCoeff();
    const double rec = max_abs_diff(run(ld, xd, Form::recurrent), par);
    EXPECT_LT(rec, 1e-4 * scale);
    std::printf("[ measured ] E=%ld V=%ld H=%ld: |recurrent - parallel| / max|y| = %.2e\n", long(c.E), long(c.V),
                long(c.H), rec / scale);
    EXPECT_GT(rec, 0.0);  // they really differ: the eps term is seen
    for (Index chunk : {Index(3), Index(4), c.T + 1}) {
      EXPECT_LT(max_abs_diff(run(ld, xd, Form::chunkwise, chunk), par), 1e-4 * scale) << "chunk " << chunk;
    }
  }
}

// A prefill in chunks (state kept), then recurrent decoding, equals one parallel pass (eps = 0).
TEST(MultiScaleRetention, ChunkwisePrefillThenRecurrentDecode) {
  const Case c{24, 39, 3, 19};
  const Reference r = make_reference(c, 0.0, 400);
  const MatD x = random_input(c.T, c.E, 401);
  const auto ld = make_layer<double>(r);
  const auto lf = make_layer<float>(r);
  const MatD want = run(ld, Matrix<double>(x), Form::parallel);
  const double scale = want.cwiseAbs().maxCoeff();
  for (Index split : {Index(1), Index(5), Index(8), Index(13)}) {
    for (Index chunk : {Index(2), Index(3), Index(4)}) {
      // double
      {
        Workspace<double> ws;
        auto st = ld.make_state();
        Matrix<double> xd = x, y(c.T, c.E);
        ld.forward_chunkwise(xd.topRows(split), y.topRows(split), st, ws, chunk);
        EXPECT_EQ(st.position, split);
        // the rest: a second chunkwise call for a few rows, then one token at a time
        const Index mid = std::min(c.T, split + 3);
        ld.forward_chunkwise(xd.middleRows(split, mid - split), y.middleRows(split, mid - split), st, ws, chunk);
        for (Index t = mid; t < c.T; ++t) ld.forward_recurrent(xd.middleRows(t, 1), y.middleRows(t, 1), st, ws);
        EXPECT_EQ(st.position, c.T);
        EXPECT_LT(max_abs_diff(y, want), 1e-11 * scale) << "split " << split << " chunk " << chunk;
      }
      // float
      {
        Workspace<float> ws;
        auto st = lf.make_state();
        Matrix<float> xf = x.cast<float>(), y(c.T, c.E);
        lf.forward_chunkwise(xf.topRows(split), y.topRows(split), st, ws, chunk);
        lf.forward_recurrent(xf.bottomRows(c.T - split), y.bottomRows(c.T - split), st, ws);
        EXPECT_LT(max_abs_diff(y.cast<double>(), want), 3e-5 * scale) << "split " << split << " chunk " << chunk;
      }
    }
  }
}

// Sequences longer than the chunkwise form's row block (1024 rows, rounded up to whole chunks) run
// block by block with the state carried between blocks: same outputs and final state as the
// recurrent form, for chunk sizes that do and do not divide the block and the sequence.
TEST(MultiScaleRetention, ChunkwiseAcrossRowBlocksEqualsRecurrent) {
  const Case c{16, 24, 2, 1500};
  const Reference r = make_reference(c, 0.0, 450);
  const Matrix<double> x = random_input(c.T, c.E, 451);
  const auto ld = make_layer<double>(r);
  Workspace<double> ws;
  auto rec = ld.make_state();
  Matrix<double> want(c.T, c.E);
  ld.forward_recurrent(x, want, rec, ws);
  const double scale = want.cwiseAbs().maxCoeff();
  for (Index chunk : {Index(7), Index(300), Index(512), Index(1100)}) {
    auto st = ld.make_state();
    Matrix<double> y(c.T, c.E);
    ld.forward_chunkwise(x, y, st, ws, chunk);
    EXPECT_LT(max_abs_diff(y, want), 1e-11 * scale) << "chunk " << chunk;
    EXPECT_EQ(st.position, c.T);
    EXPECT_LT((st.kv - rec.kv).cwiseAbs().maxCoeff(), 1e-11 * rec.kv.cwiseAbs().maxCoeff()) << "chunk " << chunk;
    EXPECT_LT((st.scale - rec.scale).cwiseAbs().maxCoeff(), 1e-9) << "chunk " << chunk;
    Matrix<double> y2(c.T, c.E);  // without a state: the same rows
    ld.forward_chunkwise(x, y2, ws, chunk);
    EXPECT_EQ(y2, y) << "chunk " << chunk;
  }
}

// Recurrent decoding token by token equals one call over all the tokens (up to the projections'
// rounding: Eigen's GEMV for one row and GEMM for many round differently), and the state does not grow.
TEST(MultiScaleRetention, RecurrentStepByStepAndConstantState) {
  const Case c{32, 64, 4, 20};
  const Reference r = make_reference(c, 1e-6, 500);
  const auto lf = make_layer<float>(r);
  const Matrix<float> x = random_input(c.T, c.E, 501).cast<float>();
  const Matrix<float> all = run(lf, x, Form::recurrent);
  Workspace<float> ws;
  auto st = lf.make_state();
  const std::size_t bytes = st.bytes();
  EXPECT_EQ(bytes, (4u * 8u * 16u + 4u) * sizeof(float));
  Matrix<float> y(c.T, c.E);
  std::size_t allocs = 0;
  for (Index t = 0; t < c.T; ++t) {
    lf.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), st, ws);
    if (t == 0) allocs = ws.allocations();
    EXPECT_EQ(st.bytes(), bytes);
  }
  EXPECT_EQ(ws.allocations(), allocs) << "the decode path allocates after the first token";
  EXPECT_LT((y - all).cwiseAbs().maxCoeff(), 1e-5f * all.cwiseAbs().maxCoeff());
  st.reset();
  EXPECT_EQ(st.position, 0);
  lf.forward_recurrent(x, y, st, ws);
  EXPECT_TRUE(y == all);
}

TEST(MultiScaleRetention, TablesFollowTorchscale) {
  RetentionConfig cfg;
  cfg.embed_dim = 32;
  cfg.num_heads = 2;  // key_dim 16: 8 angles
  MultiScaleRetention<float> m(cfg);
  const std::vector<float>& f = m.rotary().inv_freq();
  ASSERT_EQ(f.size(), 8u);
  EXPECT_EQ(m.rotary().layout(), RopeLayout::interleaved);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[7], 1e-4, 1e-10);
  EXPECT_NEAR(f[1], 1.0 / std::pow(10000.0, 1.0 / 7.0), 1e-7);
  ASSERT_EQ(m.log_decays().size(), 2u);
  EXPECT_NEAR(m.log_decays()[0], std::log(1 - 1.0 / 32), 1e-7);
  EXPECT_NEAR(m.log_decays()[1], std::log(1 - 1.0 / 64), 1e-7);
  EXPECT_EQ(m.head_dim(), 16);  // value_dim 0 = embed_dim
  EXPECT_EQ(m.parameters(), 5 * 32 * 32);
}

TEST(MultiScaleRetention, EmptyInputAndAliasing) {
  const Case c{16, 16, 2, 7};
  const Reference r = make_reference(c, 1e-6, 600);
  const auto lf = make_layer<float>(r);
  Workspace<float> ws;
  Matrix<float> x0(0, 16), y0(0, 16);
  lf.forward_parallel(x0, y0, ws);
  auto st = lf.make_state();
  lf.forward_recurrent(x0, y0, st, ws);
  lf.forward_chunkwise(x0, y0, st, ws, 3);
  EXPECT_EQ(st.position, 0);
  Matrix<float> x = random_input(c.T, c.E, 601).cast<float>();
  const Matrix<float> want = run(lf, x, Form::parallel);
  lf.forward_parallel(x, x, ws);  // y may be x
  EXPECT_TRUE(x == want);
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

template <class F>
void expect_error(F f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error, expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("MultiScaleRetention"), std::string::npos) << e.what();
  }
}

TEST(MultiScaleRetention, ConfigErrors) {
  auto make = [](Index E, Index V, Index H, double eps = 1e-6, Index chunk = 512) {
    RetentionConfig c;
    c.embed_dim = E;
    c.value_dim = V;
    c.num_heads = H;
    c.layernorm_eps = eps;
    c.chunk_size = chunk;
    return [c] { MultiScaleRetention<float> m(c, "ret"); };
  };
  expect_error(make(0, 0, 2), ErrorKind::config, "embed_dim = 0");
  expect_error(make(16, 16, 0), ErrorKind::config, "num_heads = 0");
  expect_error(make(18, 16, 4), ErrorKind::config, "embed_dim = 18 must be num_heads = 4 times an even key_dim");
  expect_error(make(12, 12, 4), ErrorKind::config, "even key_dim");  // key_dim 3
  expect_error(make(16, 18, 4), ErrorKind::config, "value_dim = 18 is not divisible by num_heads = 4");
  expect_error(make(16, 16, 4, -1.0), ErrorKind::config, "layernorm_eps = -1");
  expect_error(make(16, 16, 4, 1e-6, 0), ErrorKind::config, "chunk_size = 0");
  RetentionConfig c;
  c.embed_dim = 16;
  c.value_dim = 32;
  c.num_heads = 2;
  expect_error([&] { MultiScaleRetention<float> m(c, Linear<float>({16, 16}), Linear<float>({16, 16}),
                                                  Linear<float>({16, 16}), Linear<float>({16, 32}),
                                                  Linear<float>({32, 16})); },
               ErrorKind::shape_mismatch, "v_proj has shape [16, 16], expected [32, 16]");
}

TEST(MultiScaleRetention, ShapeAndStateErrors) {
  RetentionConfig c;
  c.embed_dim = 16;
  c.value_dim = 24;
  c.num_heads = 2;
  MultiScaleRetention<float> m(c, "layers.3.retention");
  Workspace<float> ws;
  Matrix<float> x(5, 16), bad_x(5, 15), y(5, 16), bad_y(4, 16);
  x.setOnes();
  expect_error([&] { m.forward_parallel(bad_x, y, ws); }, ErrorKind::shape_mismatch,
               "input x has shape [5, 15], expected [*, 16]");
  expect_error([&] { m.forward_parallel(x, bad_y, ws); }, ErrorKind::shape_mismatch,
               "output y has shape [4, 16], expected [5, 16]");
  expect_error([&] { m.forward_chunkwise(x, y, ws, -2); }, ErrorKind::invalid_argument, "chunk_size = -2");
  RetentionConfig other = c;
  other.value_dim = 16;
  auto st = MultiScaleRetention<float>(other).make_state();
  expect_error([&] { m.forward_recurrent(x, y, st, ws); }, ErrorKind::shape_mismatch, "state has 2 heads, kv [16, 8]");
  expect_error([&] { m.forward_chunkwise(x, y, st, ws, 2); }, ErrorKind::shape_mismatch, "expected 2 heads, kv [16, 12]");
  auto good = m.make_state();
  good.position = -1;
  expect_error([&] { m.forward_recurrent(x, y, good, ws); }, ErrorKind::invalid_argument, "state position = -1");
  try {
    m.forward_parallel(bad_x, y, ws);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'layers.3.retention'"), std::string::npos) << e.what();
  }
}

TEST(MultiScaleRetention, LoadErrors) {
  RetentionConfig c;
  c.embed_dim = 8;
  c.value_dim = 16;
  c.num_heads = 2;
  SafeTensorsWriter w;
  const Matrix<float> e = Matrix<float>::Constant(8, 8, 0.5f), v = Matrix<float>::Constant(16, 8, 0.25f);
  w.add("layers.0.retention.q_proj.weight", e);
  w.add("layers.0.retention.k_proj.weight", e);
  w.add("layers.0.retention.v_proj.weight", v);
  w.add("layers.0.retention.g_proj.weight", e);  // wrong shape
  const SafeTensors st = SafeTensors::from_bytes(w.to_bytes());
  try {
    MultiScaleRetention<float>::load(st, "layers.0.retention", c);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::shape_mismatch) << err.what();
    EXPECT_NE(std::string(err.what()).find("g_proj"), std::string::npos) << err.what();
  }
  SafeTensorsWriter w2;
  w2.add("layers.0.retention.q_proj.weight", e);
  const SafeTensors st2 = SafeTensors::from_bytes(w2.to_bytes());
  try {
    MultiScaleRetention<float>::load(st2, "layers.0.retention", c);
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::missing_weight) << err.what();
    EXPECT_NE(std::string(err.what()).find("layers.0.retention.k_proj.weight"), std::string::npos) << err.what();
  }
}

}  // namespace
