// LongNet dilated attention (ops/dilated_attention.hpp) against a naive per-branch computation that
// follows torchscale's DilatedAttention step by step: segments of min(w, T) positions, per head group
// j the positions seg + j + r m (dense_to_sparse), dense causal attention on each gathered segment
// (the reference attention), scattered back with lse -1e8 where a branch does not cover a row
// (sparse_to_dense), merged with softmax(lse) weights. Prefill, decode == prefill, GQA, errors.
#include <eigenformer/attention/multi_head_attention.hpp>
#include <eigenformer/ops/dilated_attention.hpp>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefAttentionOptions;
using eftest::RefMatrix;

namespace {

RefMatrix naive_longnet(const RefMatrix& q, const RefMatrix& k, const RefMatrix& v, long H, long Hkv,
                        const std::vector<DilatedBranch>& branches, bool causal, double scale) {
  const long T = static_cast<long>(q.rows()), d = static_cast<long>(q.cols()) / H, dv = static_cast<long>(v.cols()) / Hkv;
  const long G = H / Hkv;
  std::vector<RefMatrix> outs;
  std::vector<RefMatrix> lses;
  for (const DilatedBranch& b : branches) {
    const long r = b.dilation, sl = std::min<long>(b.segment, T);
    const long gs = (H + r - 1) / r;  // torchscale: heads padded to a multiple of r, split in r groups
    RefMatrix out = RefMatrix::Zero(T, H * dv), lse = RefMatrix::Constant(T, H, -1e8);
    for (long s0 = 0; s0 < T; s0 += sl)
      for (long j = 0; j < r; ++j) {
        std::vector<long> idx;  // real positions of the sparsified segment (padding is never attended causally)
        for (long p = s0 + j; p < std::min(T, s0 + sl); p += r) idx.push_back(p);
        if (idx.empty()) continue;
        const long n = static_cast<long>(idx.size());
        for (long h = j * gs; h < std::min(H, (j + 1) * gs); ++h) {
          const long gk = h / G;
          RefMatrix qi(n, d), ki(n, d), vi(n, dv);
          for (long m = 0; m < n; ++m) {
            qi.row(m) = q.block(idx[m], h * d, 1, d);
            ki.row(m) = k.block(idx[m], gk * d, 1, d);
            vi.row(m) = v.block(idx[m], gk * dv, 1, dv);
          }
          RefAttentionOptions o;
          o.scale = scale;
          o.causal = causal;
          RefMatrix l;
          const RefMatrix a = eftest::reference_attention(qi, ki, vi, eftest::iota_positions(n), eftest::iota_positions(n),
                                                          1, 1, o, &l);
          for (long m = 0; m < n; ++m) {
            out.block(idx[m], h * dv, 1, dv) = a.row(m);
            lse(idx[m], h) = l(m, 0);
          }
        }
      }
    outs.push_back(out);
    lses.push_back(lse);
  }
  RefMatrix merged = RefMatrix::Zero(T, H * dv);
  for (long t = 0; t < T; ++t)
    for (long h = 0; h < H; ++h) {
      double m = -1e300;
      for (const auto& l : lses) m = std::max(m, l(t, h));
      double z = 0;
      for (const auto& l : lses) z += std::exp(l(t, h) - m);
      for (std::size_t i = 0; i < outs.size(); ++i)
        merged.block(t, h * dv, 1, dv) += outs[i].block(t, h * dv, 1, dv) * (std::exp(lses[i](t, h) - m) / z);
    }
  return merged;
}

struct LnCase {
  Matrix<float> q, k, v;
  Index H, Hkv, d;
};

LnCase make(Index T, Index H, Index Hkv, Index d, std::mt19937& g) {
  return LnCase{eftest::random_matrix<float>(T, H * d, g), eftest::random_matrix<float>(T, Hkv * d, g),
             eftest::random_matrix<float>(T, Hkv * d, g), H, Hkv, d};
}

// Queries rows [t0, t0 + n) (positions t0..) against keys 0 .. kv_len - 1.
Matrix<float> run(const LnCase& r, const std::vector<DilatedBranch>& br, bool causal, Index t0, Index n, Index kv_len,
                  Matrix<float>* lse = nullptr) {
  const AttentionDims dims{r.H, r.Hkv, r.d, r.d, 1.0f / std::sqrt(float(r.d))};
  KVSpan<float> kv{r.k.data(), r.v.data(), r.k.cols(), r.v.cols(), r.d, r.d, kv_len, 0};
  Matrix<float> out = Matrix<float>::Constant(n, r.H * r.d, 7.0f);
  if (lse) lse->resize(n, r.H);
  AttentionIO io{r.q.data() + t0 * r.q.cols(), r.q.cols(), n, t0, out.data(), out.cols(), lse ? lse->data() : nullptr,
                 r.H};
  Workspace<float> ws;
  dilated_attention(dims, io, kv, br, causal, ws);
  return out;
}

void expect_near(const Matrix<float>& a, const RefMatrix& b, double tol, const std::string& what) {
  ASSERT_EQ(a.rows(), b.rows());
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) ASSERT_NEAR(a(i, j), b(i, j), tol) << what << " row " << i << " col " << j;
}

TEST(DilatedAttention, MatchesNaivePerBranchComputation) {
  auto g = eftest::rng(950);
  const std::vector<std::vector<DilatedBranch>> configs = {
      {{16, 1}}, {{16, 1}, {32, 2}, {64, 4}}, {{8, 2}, {24, 3}}, {{12, 1}, {48, 4}, {96, 8}}};
  for (const auto& br : configs)
    for (Index T : {1, 5, 40, 100, 203})
      for (auto [H, Hkv] : {std::pair<Index, Index>{4, 4}, {6, 2}, {8, 1}, {3, 3}}) {
        const LnCase r = make(T, H, Hkv, 16, g);
        const RefMatrix want = naive_longnet(r.q.cast<double>(), r.k.cast<double>(), r.v.cast<double>(), H, Hkv, br,
                                             true, 0.25);
        const std::string what = "branches " + std::to_string(br.size()) + " T" + std::to_string(T) + " H" +
                                 std::to_string(H) + "/" + std::to_string(Hkv);
        expect_near(run(r, br, true, 0, T, T), want, 3e-5, what);
        // Bidirectional inside each sparsified segment.
        const RefMatrix want_bi = naive_longnet(r.q.cast<double>(), r.k.cast<double>(), r.v.cast<double>(), H, Hkv,
                                                br, false, 0.25);
        expect_near(run(r, br, false, 0, T, T), want_bi, 3e-5, what + " bidirectional");
      }
}

TEST(DilatedAttention, DecodeEqualsPrefill) {
  auto g = eftest::rng(951);
  const std::vector<DilatedBranch> br = {{16, 1}, {32, 2}, {64, 4}};
  const Index T = 150;
  for (auto [H, Hkv] : {std::pair<Index, Index>{4, 4}, {8, 2}, {6, 6}}) {
    const LnCase r = make(T, H, Hkv, 16, g);
    Matrix<float> lse_full;
    const Matrix<float> full = run(r, br, true, 0, T, T, &lse_full);
    for (Index t = 0; t < T; ++t) {  // one token at a time against the cache of the first t + 1 keys
      Matrix<float> lse;
      const Matrix<float> step = run(r, br, true, t, 1, t + 1, &lse);
      for (Index j = 0; j < step.cols(); ++j) ASSERT_NEAR(step(0, j), full(t, j), 1e-5) << "t " << t;
      for (Index h = 0; h < H; ++h) ASSERT_NEAR(lse(0, h), lse_full(t, h), 1e-5);
    }
    // Several queries at the end (a chunked prefill continuing a cache).
    const Matrix<float> tail = run(r, br, true, T - 7, 7, T);
    for (Index i = 0; i < 7; ++i)
      for (Index j = 0; j < tail.cols(); ++j) ASSERT_NEAR(tail(i, j), full(T - 7 + i, j), 1e-5);
  }
}

TEST(DilatedAttention, ConfigErrors) {
  auto g = eftest::rng(952);
  const LnCase r = make(10, 2, 2, 8, g);
  EXPECT_THROW(run(r, {}, true, 0, 10, 10), Error);
  try {
    run(r, {{10, 4}}, true, 0, 10, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("segment_length = 10"), std::string::npos) << e.what();
  }
}

// MultiHeadAttention with AttentionConfig::dilated: the projections, then LongNet (no positions here,
// so the naive computation applies to the projected q / k / v as they are), prefill and cached decode.
TEST(DilatedAttention, MultiHeadAttentionLayer) {
  auto g = eftest::rng(953);
  AttentionConfig c;
  c.hidden_size = 24;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.position = PositionEncoding::none;
  c.dilated = {{8, 1}, {16, 2}, {32, 4}};
  MultiHeadAttention m(c);
  for (Linear<float>* l : {&m.q_proj(), &m.k_proj(), &m.v_proj(), &m.o_proj()})
    l->weight() = eftest::random_matrix<float>(l->out_features(), l->in_features(), g, 0.3);
  const Index T = 45;
  const Matrix<float> x = eftest::random_matrix<float>(T, 24, g);
  Workspace<float> ws;
  Matrix<float> y(T, 24);
  m.forward(x, y, ws);
  const RefMatrix xd = x.cast<double>();
  auto W = [](const Linear<float>& l) { return RefMatrix(l.weight().cast<double>()); };
  const RefMatrix o = naive_longnet(xd * W(m.q_proj()).transpose(), xd * W(m.k_proj()).transpose(),
                                    xd * W(m.v_proj()).transpose(), 6, 2, c.dilated, true, 1.0 / std::sqrt(8.0));
  expect_near(y, o * W(m.o_proj()).transpose(), 2e-4, "layer prefill");
  // Decode through a KV cache: a prompt of 13, then 1 or 3 tokens at a time.
  KVCache<float> cache({2, 8, 8, T});
  Matrix<float> z(T, 24);
  m.forward(x.topRows(13), z.topRows(13), cache, ws);
  for (Index t = 13; t < T;) {
    const Index n = std::min<Index>(t % 2 ? 1 : 3, T - t);
    m.forward(x.middleRows(t, n), z.middleRows(t, n), cache, ws);
    t += n;
  }
  EXPECT_LT((z - y).cwiseAbs().maxCoeff(), 1e-5f);
  // Combinations that are refused.
  AttentionConfig bad = c;
  bad.sliding_window = 4;
  EXPECT_THROW(MultiHeadAttention{bad}, Error);
  KVCache<float> ring({2, 8, 8, 16, CacheEviction::sliding_window});
  EXPECT_THROW(m.forward(x.topRows(2), z.topRows(2), ring, ws), Error);
  EXPECT_THROW(m.forward(x, y, ws, nullptr, std::vector<std::uint8_t>(T, 1).data()), Error);
}

}  // namespace
