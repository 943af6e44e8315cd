// KAN basis kernels and KANLinear forward against a plain recursive Cox-de Boor in double;
// local kernel == GEMM path == `_ref` twin; checkpoint loading with efficient-kan names; errors;
// the minimum-norm least squares behind curve2coeff against Eigen's CompleteOrthogonalDecomposition.
#include <eigenformer/kan/cheby_kan.hpp>
#include <eigenformer/kan/fast_kan.hpp>
#include <eigenformer/kan/kan.hpp>
#include <eigenformer/kan/kan_ffn.hpp>
#include <eigenformer/kan/kan_linear.hpp>
#include <eigenformer/kernels/kan.hpp>
#include <eigenformer/ops/lstsq.hpp>

#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

// ---- the independent reference: the textbook recursion, evaluated plainly in double ----

// N_{j,d}(x) on knots g (Cox-de Boor 1972): order 0 is the indicator of [g_j, g_{j+1}).
double cox_de_boor(const std::vector<double>& g, int j, int d, double x) {
  if (d == 0) return (g[j] <= x && x < g[j + 1]) ? 1.0 : 0.0;
  const double a = (x - g[j]) / (g[j + d] - g[j]) * cox_de_boor(g, j, d - 1, x);
  const double b = (g[j + d + 1] - x) / (g[j + d + 1] - g[j + 1]) * cox_de_boor(g, j + 1, d - 1, x);
  return a + b;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// y[t][o] = sum_i base[o][i] silu(x[t][i]) + sum_{i,j} spline[o][i][j] scaler[o][i] N_{j,k}(x[t][i]);
// `mag` gets sum of |terms| (for float error bounds).
template <class Layer>
Matrix<double> naive_kan(const Layer& l, const Matrix<double>& x, Matrix<double>* mag = nullptr) {
  const auto& c = l.config();
  const int G = c.grid_size, k = c.spline_order;
  const Index in = c.in_features, out = c.out_features, nc = G + k;
  Matrix<double> y = Matrix<double>::Zero(x.rows(), out);
  if (mag) mag->setZero(x.rows(), out);
  for (Index t = 0; t < x.rows(); ++t)
    for (Index i = 0; i < in; ++i) {
      std::vector<double> g(static_cast<std::size_t>(G + 2 * k + 1));
      for (std::size_t q = 0; q < g.size(); ++q) g[q] = double(l.grid()(i, Index(q)));
      std::vector<double> B(static_cast<std::size_t>(nc));
      for (int j = 0; j < nc; ++j) B[std::size_t(j)] = cox_de_boor(g, j, k, x(t, i));
      for (Index o = 0; o < out; ++o) {
        double term = double(l.base_weight()(o, i)) * silu(x(t, i));
        double s = term, m = std::fabs(term);
        const double sc = l.has_scaler() ? double(l.spline_scaler()(o, i)) : 1.0;
        for (int j = 0; j < nc; ++j) {
          const double tj = double(l.spline_weight()(o, i * nc + j)) * sc * B[std::size_t(j)];
          s += tj;
          m += std::fabs(tj);
        }
        y(t, o) += s;
        if (mag) (*mag)(t, o) += m;
      }
    }
  return y;
}

// A strictly increasing random knot row of n knots starting near `start`.
std::vector<double> random_knots(int n, std::mt19937& rng, double start = -1.5) {
  std::uniform_real_distribution<double> d(0.1, 1.0);
  std::vector<double> g(static_cast<std::size_t>(n));
  double v = start;
  for (auto& e : g) {
    e = v;
    v += d(rng) * 0.5;
  }
  return g;
}

template <class T>
KANLinear<T> random_layer(Index in, Index out, int G, int k, bool scaler, bool uniform, std::mt19937& rng) {
  typename KANLinear<T>::Config c;
  c.in_features = in;
  c.out_features = out;
  c.grid_size = G;
  c.spline_order = k;
  c.enable_standalone_scale_spline = scaler;
  KANLinear<T> l(c, "kan");
  if (!uniform) {
    for (Index i = 0; i < in; ++i) {
      const auto g = random_knots(G + 2 * k + 1, rng);
      for (int j = 0; j <= G + 2 * k; ++j) l.mutable_grid()(i, j) = T(g[std::size_t(j)]);
    }
  }
  l.mutable_base_weight() = eftest::random_matrix<T>(out, in, rng, 0.5);
  l.mutable_spline_weight() = eftest::random_matrix<T>(out, in * (G + k), rng, 0.5);
  if (scaler) l.mutable_spline_scaler() = eftest::random_matrix<T>(out, in, rng, 1.0);
  l.prepare();
  return l;
}

// Dense [n, G + k] from windows.
template <class T>
std::vector<double> dense_from_windows(std::size_t n, int G, int k, const std::vector<std::int32_t>& j0,
                                       const std::vector<T>& vals) {
  std::vector<double> B(n * std::size_t(G + k), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_GE(j0[i], 0);
    EXPECT_LE(j0[i] + k, G + k - 1);
    for (int r = 0; r <= k; ++r) B[i * std::size_t(G + k) + std::size_t(j0[i] + r)] = double(vals[std::size_t(r) * n + i]);
  }
  return B;
}

// ---- basis kernels ----

TEST(KanBasis, WindowsMatchCoxDeBoorAnyOrder) {
  auto rng = eftest::rng(900);
  for (int k = 0; k <= 5; ++k)
    for (int G : {1, 2, 5, 8}) {
      const int nk = G + 2 * k + 1;
      for (bool uniform : {true, false}) {
        std::vector<double> g = random_knots(nk, rng);
        if (uniform)
          for (int j = 0; j < nk; ++j) g[std::size_t(j)] = -1.0 + 0.25 * j;
        // Samples: random over [g0 - 0.5, g_last + 0.5], every knot, and midpoints.
        std::vector<double> xs;
        std::uniform_real_distribution<double> d(g.front() - 0.5, g.back() + 0.5);
        for (int q = 0; q < 61; ++q) xs.push_back(d(rng));
        for (int j = 0; j < nk; ++j) xs.push_back(g[std::size_t(j)]);
        for (int j = 0; j + 1 < nk; ++j) xs.push_back(0.5 * (g[std::size_t(j)] + g[std::size_t(j) + 1]));
        const std::size_t n = xs.size();
        // Knot rows per input (all the same here).
        std::vector<double> gd(n * std::size_t(nk));
        std::vector<float> gf(n * std::size_t(nk));
        for (std::size_t i = 0; i < n; ++i)
          for (int j = 0; j < nk; ++j) {
            gd[i * std::size_t(nk) + std::size_t(j)] = g[std::size_t(j)];
            gf[i * std::size_t(nk) + std::size_t(j)] = float(g[std::size_t(j)]);
          }
        std::vector<float> xf(xs.begin(), xs.end());
        std::vector<std::int32_t> j0(n);
        std::vector<double> vd(n * std::size_t(k + 1));
        std::vector<float> vf(n * std::size_t(k + 1));
        kernels::bspline_local(xs.data(), n, gd.data(), std::size_t(nk), G, k, j0.data(), vd.data(), n);
        const auto Bd = dense_from_windows(n, G, k, j0, vd);
        kernels::bspline_local(xf.data(), n, gf.data(), std::size_t(nk), G, k, j0.data(), vf.data(), n);
        const auto Bf = dense_from_windows(n, G, k, j0, vf);
        std::vector<double> Bu;
        if (uniform && k >= 1) {
          std::vector<float> g0(n, float(g[0])), inv_h(n, 4.0f);
          kernels::bspline_local_uniform(xf.data(), n, g0.data(), inv_h.data(), G, k, j0.data(), vf.data(), n);
          Bu = dense_from_windows(n, G, k, j0, vf);
        }
        // The `_ref` twin (efficient-kan's full recursion).
        std::vector<double> gfl(g.size());  // the knots the float paths see
        for (std::size_t j = 0; j < g.size(); ++j) gfl[j] = double(float(g[j]));
        std::vector<double> Br(std::size_t(G + k)), tmp(std::size_t(G + 2 * k + 1));
        for (std::size_t i = 0; i < n; ++i) {
          const double x = xs[i];
          const double xfl = double(xf[i]);  // float paths see the rounded input
          kernels::ref::bspline_dense(x, g.data(), G, k, Br.data(), tmp.data());
          for (int j = 0; j < G + k; ++j) {
            const double want = cox_de_boor(g, j, k, x);
            const double want_f = cox_de_boor(gfl, j, k, xfl);
            const std::size_t q = i * std::size_t(G + k) + std::size_t(j);
            ASSERT_NEAR(Bd[q], want, 1e-13) << "k=" << k << " G=" << G << " x=" << x << " j=" << j;
            ASSERT_NEAR(Br[std::size_t(j)], want, 1e-13) << "ref k=" << k << " G=" << G << " x=" << x << " j=" << j;
            // float: each basis value is a degree-k polynomial of values in [0, 1]; 1e-6 ~ 8 ulp of 1.
            // At a knot the float knot row and the rounded x may pick the neighbouring interval:
            // only for k = 0 (discontinuous) is that a different value, so k = 0 skips knots.
            const bool at_knot = std::find(gfl.begin(), gfl.end(), xfl) != gfl.end();
            if (k > 0 || !at_knot) {
              ASSERT_NEAR(Bf[q], want_f, 2e-6) << "float k=" << k << " G=" << G << " x=" << x;
            }
            if (!Bu.empty()) {
              ASSERT_NEAR(Bu[q], want_f, 2e-6) << "uniform k=" << k << " G=" << G << " x=" << x;
            }
          }
        }
      }
    }
}

TEST(KanBasis, PartitionOfUnityAndLocalSupport) {
  auto rng = eftest::rng(901);
  for (int k = 0; k <= 4; ++k) {
    const int G = 6, nk = G + 2 * k + 1;
    const auto g = random_knots(nk, rng);
    std::uniform_real_distribution<double> d(g[std::size_t(k)], g[std::size_t(G + k)]);
    for (int q = 0; q < 200; ++q) {
      const double x = d(rng);
      const int m = int(std::upper_bound(g.begin(), g.end(), x) - g.begin()) - 1;
      std::int32_t j0;
      std::vector<double> v(std::size_t(k + 1));
      kernels::bspline_local(&x, 1, g.data(), std::size_t(nk), G, k, &j0, v.data(), 1);
      EXPECT_EQ(j0, m - k);  // inside the main range the window is exactly N_{m-k..m}
      double s = 0;
      for (double e : v) {
        EXPECT_GE(e, 0.0);
        s += e;
      }
      EXPECT_NEAR(s, 1.0, 1e-13);
      for (int j = 0; j < G + k; ++j)
        if (j < m - k || j > m) {
          EXPECT_EQ(cox_de_boor(g, j, k, x), 0.0);
        }
    }
  }
}

TEST(KanBasis, OutsideGridZeroNonFiniteNaN) {
  const int G = 5, k = 3, nk = G + 2 * k + 1;
  std::vector<float> g(nk);
  for (int j = 0; j < nk; ++j) g[std::size_t(j)] = -1.0f + 0.4f * float(j - k);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> xs{-3.0f, g.front() - 1e-3f, g.back(), 1e20f, -1e20f, inf, -inf, std::nanf("")};
  const std::size_t n = xs.size();
  std::vector<float> grid(n * nk), g0(n, g[0]), ih(n, 1.0f / 0.4f);
  for (std::size_t i = 0; i < n; ++i) std::copy(g.begin(), g.end(), grid.begin() + std::ptrdiff_t(i * nk));
  std::vector<std::int32_t> j0(n);
  std::vector<float> v(n * (k + 1));
  for (int uniform = 0; uniform < 2; ++uniform) {
    if (uniform)
      kernels::bspline_local_uniform(xs.data(), n, g0.data(), ih.data(), G, k, j0.data(), v.data(), n);
    else
      kernels::bspline_local(xs.data(), n, grid.data(), nk, G, k, j0.data(), v.data(), n);
    for (std::size_t i = 0; i < n; ++i)
      for (int r = 0; r <= k; ++r) {
        const float e = v[std::size_t(r) * n + i];
        if (std::isfinite(xs[i])) {
          EXPECT_EQ(e, 0.0f) << "x=" << xs[i];
        } else {
          EXPECT_TRUE(std::isnan(e)) << "x=" << xs[i];  // efficient-kan: inf * 0 = NaN
        }
      }
  }
}

// ---- KANLinear forward ----

TEST(KANLinear, MatchesNaiveDoubleReference) {
  auto rng = eftest::rng(902);
  struct Case { Index in, out, tokens; int G, k; bool scaler, uniform; };
  const std::vector<Case> cases{{1, 1, 1, 5, 3, true, true},   {7, 9, 3, 5, 3, true, true},
                                {33, 17, 5, 3, 2, false, true}, {9, 65, 17, 8, 1, true, false},
                                {16, 8, 2, 4, 0, true, true},   {5, 33, 9, 2, 5, true, false},
                                {24, 40, 33, 5, 3, true, false}};
  for (const Case& c : cases) {
    auto ld = random_layer<double>(c.in, c.out, c.G, c.k, c.scaler, c.uniform, rng);
    const Matrix<double> x = eftest::random_matrix<double>(c.tokens, c.in, rng, 1.0);  // some outside the grid
    Matrix<double> mag;
    const Matrix<double> want = naive_kan(ld, x, &mag);
    for (KanPath p : {KanPath::local, KanPath::gemm, KanPath::automatic}) {
      const Matrix<double> got = ld.forward(x, p);
      EXPECT_LE((got - want).cwiseAbs().maxCoeff(), 1e-12 * (1.0 + mag.maxCoeff())) << c.in << "x" << c.out;
    }
    // The float layer with the same (rounded) parameters, against the reference on its own parameters.
    KANLinear<float> lf(ld.config(), Matrix<float>(ld.grid().cast<float>()), Matrix<float>(ld.base_weight().cast<float>()),
                        Matrix<float>(ld.spline_weight().cast<float>()), Matrix<float>(ld.spline_scaler().cast<float>()),
                        "kan");
    EXPECT_EQ(lf.uniform_grid(), c.uniform && c.k >= 1);
    const Matrix<float> xf = x.cast<float>();
    const Matrix<double> want_f = naive_kan(lf, xf.cast<double>(), &mag);
    for (KanPath p : {KanPath::local, KanPath::gemm}) {
      const Matrix<double> got = lf.forward(xf, p).cast<double>();
      // float: sums of in (k + 2) products; error <= 2e-5 of the sum of |terms| (n eps/2 for n <= 200
      // terms, plus the basis' own 1e-6).
      for (Index t = 0; t < x.rows(); ++t)
        for (Index o = 0; o < c.out; ++o)
          ASSERT_NEAR(got(t, o), want_f(t, o), 2e-5 * mag(t, o) + 1e-30)
              << "in=" << c.in << " out=" << c.out << " k=" << c.k << " path=" << int(p);
    }
  }
}

TEST(KANLinear, LocalKernelEqualsGemmPathEqualsRefTwin) {
  auto rng = eftest::rng(903);
  for (Index in : {1, 8, 13, 64}) {
    for (Index out : {1, 7, 16, 33, 129}) {
      for (bool uniform : {true, false}) {
        auto l = random_layer<float>(in, out, 5, 3, true, uniform, rng);
        const Matrix<float> x = eftest::random_matrix<float>(6, in, rng, 0.8);
        const Matrix<float> yl = l.forward(x, KanPath::local), yg = l.forward(x, KanPath::gemm);
        std::vector<float> tmp(2 * (5 + 6) + 1), yr(static_cast<std::size_t>(out));
        for (Index t = 0; t < x.rows(); ++t) {
          kernels::ref::kan_forward_dense(x.row(t).data(), std::size_t(in), l.grid().data(), std::size_t(l.grid().cols()),
                                          5, 3, l.packed_weight().data(), std::size_t(out), yr.data(), tmp.data());
          const float scale = 1.0f + l.packed_weight().cwiseAbs().colwise().sum().maxCoeff();
          for (Index o = 0; o < out; ++o) {
            ASSERT_NEAR(yl(t, o), yr[std::size_t(o)], 2e-6f * scale) << in << "x" << out;
            ASSERT_NEAR(yg(t, o), yr[std::size_t(o)], 2e-6f * scale) << in << "x" << out;
          }
        }
      }
    }
  }
}

TEST(KANLinear, ResultIndependentOfThreadCount) {
  auto rng = eftest::rng(904);
  auto l = random_layer<float>(96, 300, 5, 3, true, true, rng);
  for (Index tokens : {1, 3, 40}) {
    const Matrix<float> x = eftest::random_matrix<float>(tokens, 96, rng, 0.7);
    set_num_threads(1);
    const Matrix<float> a = l.forward(x);
    set_num_threads(2);
    const Matrix<float> b = l.forward(x);
    EXPECT_EQ((a - b).cwiseAbs().maxCoeff(), 0.0f);
  }
}

TEST(KANLinear, NonFiniteInputsPropagate) {
  auto rng = eftest::rng(905);
  auto l = random_layer<float>(4, 3, 5, 3, true, true, rng);
  Matrix<float> x = Matrix<float>::Zero(3, 4);
  x(0, 1) = std::nanf("");
  x(1, 2) = std::numeric_limits<float>::infinity();
  x(2, 0) = 1e20f;  // far outside the grid: spline part 0, base part silu(1e20) = 1e20
  for (KanPath p : {KanPath::local, KanPath::gemm}) {
    const Matrix<float> y = l.forward(x, p);
    for (Index o = 0; o < 3; ++o) {
      EXPECT_TRUE(std::isnan(y(0, o)));
      EXPECT_TRUE(std::isnan(y(1, o)));
      EXPECT_TRUE(std::isfinite(y(2, o)));
    }
  }
}

// ---- checkpoints and errors ----

TEST(KANLinear, LoadsEfficientKanNamesRoundTrip) {
  auto rng = eftest::rng(906);
  auto l = random_layer<float>(6, 4, 5, 3, true, false, rng);
  SafeTensorsWriter w;
  l.save(w, "layers.0");
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  for (const char* n : {"layers.0.base_weight", "layers.0.spline_weight", "layers.0.spline_scaler", "layers.0.grid"})
    EXPECT_TRUE(st.contains(n)) << n;
  EXPECT_EQ(st.info("layers.0.spline_weight").shape, (std::vector<std::int64_t>{4, 6, 8}));
  EXPECT_EQ(st.info("layers.0.grid").shape, (std::vector<std::int64_t>{6, 12}));
  const auto m = KANLinear<float>::load(st, "layers.0", l.config());
  const Matrix<float> x = eftest::random_matrix<float>(5, 6, rng, 1.0);
  EXPECT_EQ((m.forward(x) - l.forward(x)).cwiseAbs().maxCoeff(), 0.0f);
  const auto md = KANLinear<double>::load(st, "layers.0", l.config());
  EXPECT_LE((md.forward(x.cast<double>()) - naive_kan(md, x.cast<double>())).cwiseAbs().maxCoeff(), 1e-12);
}

template <class F>
void expect_error(F f, ErrorKind kind, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(KANLinear, ErrorsNameLayerParameterAndShapes) {
  auto rng = eftest::rng(907);
  auto l = random_layer<float>(6, 4, 5, 3, true, true, rng);
  SafeTensorsWriter w;
  l.save(w, "kan");
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  auto cfg = l.config();
  cfg.grid_size = 4;  // spline_weight then has the wrong last size
  expect_error([&] { KANLinear<float>::load(st, "kan", cfg); }, ErrorKind::shape_mismatch,
               {"KANLinear 'kan'", "kan.spline_weight", "[4, 6, 8]", "[4, 6, 7]"});
  cfg = l.config();
  expect_error([&] { KANLinear<float>::load(st, "other", cfg); }, ErrorKind::missing_weight,
               {"KANLinear 'other'", "other.base_weight"});
  SafeTensorsWriter w2;
  w2.add("kan.base_weight", l.base_weight());
  w2.add("kan.spline_weight", Dtype::F32, {4, 6, 8}, l.spline_weight().data(), 4 * 6 * 8 * sizeof(float));
  w2.add("kan.grid", l.grid());
  const auto st2 = SafeTensors::from_bytes(w2.to_bytes());
  expect_error([&] { KANLinear<float>::load(st2, "kan", cfg); }, ErrorKind::missing_weight, {"kan.spline_scaler"});
  cfg.enable_standalone_scale_spline = false;
  EXPECT_NO_THROW(KANLinear<float>::load(st2, "kan", cfg));
  Matrix<float> bad = l.grid();
  bad(2, 5) = bad(2, 4);
  expect_error([&] { KANLinear<float>(l.config(), bad, l.base_weight(), l.spline_weight(), l.spline_scaler(), "kan"); },
               ErrorKind::config, {"KANLinear 'kan'", "grid row 2", "knot 4"});
  const Matrix<float> x(3, 5);
  expect_error([&] { l.forward(x); }, ErrorKind::shape_mismatch, {"KANLinear 'kan'", "input x", "[3, 5]", "[*, 6]"});
  auto c0 = l.config();
  c0.spline_order = -1;
  expect_error([&] { KANLinear<float> z(c0, "z"); }, ErrorKind::config, {"KANLinear 'z'", "spline_order = -1"});
  c0 = l.config();
  c0.grid_size = 0;
  expect_error([&] { KANLinear<float> z(c0, "z"); }, ErrorKind::config, {"grid_size = 0"});
}

TEST(KANLinear, EmptyBatchAndWorkspaceReuse) {
  auto rng = eftest::rng(908);
  auto l = random_layer<float>(16, 24, 5, 3, true, true, rng);
  Workspace<float> ws;
  Matrix<float> x0(0, 16), y0(0, 24);
  l.forward(x0, y0, ws);
  const Matrix<float> x = eftest::random_matrix<float>(9, 16, rng, 1.0);
  Matrix<float> y(9, 24);
  l.forward(x, y, ws);
  const auto allocs = ws.allocations();
  l.forward(x, y, ws);
  l.forward(x, y, ws, KanPath::local);
  EXPECT_EQ(ws.allocations(), allocs);
}

// ---- FastKAN, ChebyKAN, the KAN FFN ----

TEST(FastKANLayer, MatchesNaiveDoubleReference) {
  auto rng = eftest::rng(910);
  for (bool base : {true, false}) {
    FastKANConfig c;
    c.in_features = 13;
    c.out_features = 9;
    c.num_grids = 6;
    c.use_base_update = base;
    FastKANLayer<double> l(c, "fk");
    l.spline_linear().weight() = eftest::random_matrix<double>(9, 13 * 6, rng, 0.3);
    if (base) {
      l.base_linear().weight() = eftest::random_matrix<double>(9, 13, rng, 0.3);
      l.base_linear().bias() = eftest::random_matrix<double>(9, 1, rng, 0.3);
    }
    const Matrix<double> x = eftest::random_matrix<double>(5, 13, rng, 1.5);
    // Plain: LayerNorm (biased variance, eps 1e-5), Gaussian bumps at linspace(-2, 2, 6), width 4 / 5.
    Matrix<double> want(5, 9), mag(5, 9);
    for (Index t = 0; t < 5; ++t) {
      double mean = 0, var = 0;
      for (Index i = 0; i < 13; ++i) mean += x(t, i) / 13;
      for (Index i = 0; i < 13; ++i) var += (x(t, i) - mean) * (x(t, i) - mean) / 13;
      for (Index o = 0; o < 9; ++o) {
        double s = base ? l.base_linear().bias()[o] : 0.0, m = std::fabs(s);
        for (Index i = 0; i < 13; ++i) {
          const double h = (x(t, i) - mean) / std::sqrt(var + 1e-5);
          for (int g = 0; g < 6; ++g) {
            const double u = (h - (-2.0 + 0.8 * g)) / 0.8;
            const double term = l.spline_linear().weight()(o, i * 6 + g) * std::exp(-u * u);
            s += term;
            m += std::fabs(term);
          }
          if (base) {
            const double term = l.base_linear().weight()(o, i) * silu(x(t, i));
            s += term;
            m += std::fabs(term);
          }
        }
        want(t, o) = s;
        mag(t, o) = m;
      }
    }
    EXPECT_LE((l.forward(x) - want).cwiseAbs().maxCoeff(), 1e-12 * (1 + mag.maxCoeff()));
    // float through a checkpoint with fast-kan's names.
    SafeTensorsWriter w;
    l.save(w, "layers.0");
    const auto st = SafeTensors::from_bytes(w.to_bytes());
    EXPECT_TRUE(st.contains("layers.0.rbf.grid"));
    EXPECT_TRUE(st.contains("layers.0.layernorm.weight"));
    EXPECT_EQ(st.contains("layers.0.base_linear.bias"), base);
    const auto lf = FastKANLayer<float>::load(st, "layers.0", c);
    const Matrix<double> got = lf.forward(x.cast<float>()).cast<double>();
    // float: exp <= 2 ulp, LayerNorm and two GEMMs over <= 91 terms: 1e-5 of the sum of |terms|.
    for (Index t = 0; t < 5; ++t)
      for (Index o = 0; o < 9; ++o) EXPECT_NEAR(got(t, o), want(t, o), 1e-5 * mag(t, o));
  }
}

TEST(ChebyKANLayer, MatchesNaiveDoubleReference) {
  auto rng = eftest::rng(911);
  for (int degree : {0, 1, 4, 7}) {
    ChebyKANConfig c{11, 6, degree};
    const Index D = degree + 1;
    std::vector<double> coef(std::size_t(11 * 6 * D));
    std::normal_distribution<double> nd(0.0, 0.3);
    for (auto& e : coef) e = nd(rng);
    ChebyKANLayer<double> l(c, coef, "ck");
    const Matrix<double> x = eftest::random_matrix<double>(7, 11, rng, 1.0);
    Matrix<double> want(7, 6), mag(7, 6);
    for (Index t = 0; t < 7; ++t)
      for (Index o = 0; o < 6; ++o) {
        double s = 0, m = 0;
        for (Index i = 0; i < 11; ++i)
          for (Index d = 0; d < D; ++d) {
            const double term = coef[std::size_t((i * 6 + o) * D + d)] * std::cos(double(d) * std::acos(std::tanh(x(t, i))));
            s += term;
            m += std::fabs(term);
          }
        want(t, o) = s;
        mag(t, o) = m;
      }
    EXPECT_LE((l.forward(x) - want).cwiseAbs().maxCoeff(), 1e-12 * (1 + mag.maxCoeff()));
    SafeTensorsWriter w;
    l.save(w, "ck");
    const auto st = SafeTensors::from_bytes(w.to_bytes());
    EXPECT_EQ(st.info("ck.cheby_coeffs").shape, (std::vector<std::int64_t>{11, 6, D}));
    const auto lf = ChebyKANLayer<float>::load(st, "ck", c);
    const Matrix<double> got = lf.forward(x.cast<float>()).cast<double>();
    // float: T_d by recurrence grows rounding ~d eps; GEMM over <= 88 terms: 1e-5 of the sum of |terms|.
    for (Index t = 0; t < 7; ++t)
      for (Index o = 0; o < 6; ++o) EXPECT_NEAR(got(t, o), want(t, o), 1e-5 * mag(t, o));
    auto bad = c;
    bad.degree = degree + 1;
    expect_error([&] { ChebyKANLayer<float>::load(st, "ck", bad); }, ErrorKind::shape_mismatch,
                 {"ChebyKANLayer 'ck'", "ck.cheby_coeffs"});
  }
}

TEST(KANFFN, EveryBasisIsUpThenDownAndLoads) {
  auto rng = eftest::rng(912);
  for (KanBasis b : {KanBasis::bspline, KanBasis::gaussian_rbf, KanBasis::chebyshev}) {
    KANFFN<float>::Config c;
    c.hidden_size = 24;
    c.intermediate_size = 40;
    c.basis = b;
    KANFFN<float> f(c, "mlp");
    // Random parameters through each layer's own accessors.
    auto fill = [&](auto& layer) {
      using L = std::decay_t<decltype(layer)>;
      if constexpr (std::is_same_v<L, KANLinear<float>>) {
        layer.reset_parameters(rng);
      } else if constexpr (std::is_same_v<L, FastKANLayer<float>>) {
        layer.spline_linear().weight() = eftest::random_matrix<float>(layer.out_features(), layer.in_features() * 8, rng, 0.1);
        layer.base_linear().weight() = eftest::random_matrix<float>(layer.out_features(), layer.in_features(), rng, 0.1);
      } else {
        layer.linear().weight() = eftest::random_matrix<float>(layer.out_features(), layer.in_features() * 4, rng, 0.1);
      }
    };
    std::visit(fill, f.up());
    std::visit(fill, f.down());
    const Matrix<float> x = eftest::random_matrix<float>(6, 24, rng, 0.7);
    const Matrix<float> h = std::visit([&](const auto& l) { return l.forward(x); }, f.up());
    const Matrix<float> want = std::visit([&](const auto& l) { return l.forward(h); }, f.down());
    Workspace<float> ws;
    Matrix<float> y(6, 24);
    f.forward(x, y, ws);
    EXPECT_EQ((y - want).cwiseAbs().maxCoeff(), 0.0f) << to_string(b);
    SafeTensorsWriter w;
    f.save(w, "model.layers.3.mlp");
    const auto st = SafeTensors::from_bytes(w.to_bytes());
    const auto g = KANFFN<float>::load(st, "model.layers.3.mlp", c);
    EXPECT_EQ((g.forward(x) - y).cwiseAbs().maxCoeff(), 0.0f) << to_string(b);
    if (b == KanBasis::bspline) {
      // The same checkpoint read as efficient-kan's KAN([24, 40, 24]).
      KAN<float>::Config kc;
      kc.layers_hidden = {24, 40, 24};
      const auto net = KAN<float>::load(st, "model.layers.3.mlp", kc);
      EXPECT_EQ((net.forward(x) - y).cwiseAbs().maxCoeff(), 0.0f);
    }
  }
}

}  // namespace

// lstsq_min_norm (curve2coeff's solver) == Eigen's CompleteOrthogonalDecomposition::solve, the
// minimum-norm least-squares solution, on every kind of system: over- and underdetermined with full
// rank, rank-deficient (repeated columns, repeated rows, a zero column), all zero, and empty.
TEST(LstsqMinNorm, EqualsCompleteOrthogonalDecomposition) {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  auto randn = [&](Index r, Index c) {
    Eigen::MatrixXd m(r, c);
    for (Index i = 0; i < r; ++i)
      for (Index j = 0; j < c; ++j) m(i, j) = nd(rng);
    return m;
  };
  std::vector<std::pair<std::string, Eigen::MatrixXd>> systems;
  systems.emplace_back("overdetermined 40x8", randn(40, 8));
  systems.emplace_back("underdetermined 6x8 (KAN init: G + 1 points, G + k coefficients)", randn(6, 8));
  systems.emplace_back("square 8x8", randn(8, 8));
  Eigen::MatrixXd rep = randn(30, 7);
  rep.col(5) = rep.col(1);
  rep.col(6) = 2.0 * rep.col(3) - rep.col(0);
  systems.emplace_back("rank 5 of 7 columns", rep);
  Eigen::MatrixXd rows = randn(3, 9);
  Eigen::MatrixXd dup(6, 9);
  dup << rows, rows;
  systems.emplace_back("repeated rows, rank 3", dup);
  Eigen::MatrixXd zc = randn(12, 5);
  zc.col(2).setZero();
  systems.emplace_back("a zero column", zc);
  systems.emplace_back("all zero", Eigen::MatrixXd::Zero(5, 4));
  systems.emplace_back("one row", randn(1, 4));
  systems.emplace_back("one column", randn(7, 1));
  for (const auto& [what, A] : systems) {
    const Eigen::MatrixXd Y = randn(A.rows(), 3);
    const Eigen::MatrixXd want = Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd>(A).solve(Y);
    const Eigen::MatrixXd got = lstsq_min_norm(A, Y);
    ASSERT_EQ(got.rows(), A.cols()) << what;
    ASSERT_EQ(got.cols(), Y.cols()) << what;
    // Two backward-stable factorizations of the same matrices: agreement to ~1e3 eps relative to
    // the solution's size (these systems have condition numbers below ~1e2).
    EXPECT_LE((got - want).cwiseAbs().maxCoeff(), 1e-12 * (1.0 + want.cwiseAbs().maxCoeff())) << what;
  }
  // Empty systems give an empty / zero solution, and a row-count mismatch is an error.
  EXPECT_EQ(lstsq_min_norm(Eigen::MatrixXd(0, 3), Eigen::MatrixXd(0, 2)), Eigen::MatrixXd::Zero(3, 2));
  EXPECT_THROW(lstsq_min_norm(randn(4, 2), randn(3, 1)), Error);
}
