// Tests of tests/reference_attention.hpp, the double-precision reference attention:
//   1. hand-computed tiny cases (exact softmax values, masks, sliding-window convention and its
//      legacy off-by-one, soft-cap order, sinks, ALiBi slopes and bias, GQA head mapping, padding,
//      lse merging, fully masked rows, NaN propagation, shape errors);
//   2. every golden fixture of tests/data/golden/attention (written by tools/make_golden_attention.py
//      from transformers' own attention modules): reference_attention(q, k, v) equals the fixture's
//      attention output before o_proj and its attention weights, and the fixture's tensors are
//      consistent with its weights (projections, RoPE rotation norms, Bloom's fused layout, o_proj).
//
// Tolerance for the fixtures (float32, produced by torch on CPU) -- a forward error bound, computed
// per element from the data, with a safety factor of 2 (see golden_bounds below):
//   a score s = scale * <q, k> computed in float32 has |error| <= gamma_{d+1} * scale * sum|q_c k_c|
//   plus a few roundings of |s| for the soft-cap, bias and max subtraction; call E_i the largest such
//   error over the visible keys of row i. A float32 softmax then gives |dp_j| <= p_j (2 E_i + (Tk+8) u)
//   (the +8 u covers exp, the division and torch's max subtraction), and out = sum_j p_j v_j adds
//   gamma_Tk sum_j p_j |v_j|, so |out error| <= sum_j p_j |v_j| (2 E_i + (2 Tk + 8) u).
// u = 2^-24 (float32 unit roundoff), gamma_n = n u / (1 - n u). Projections (x W^T + b over K inputs)
// are checked against gamma_{K+1} (sum_k |x_k W_jk| + |b_j|), the classical dot-product bound, also
// with a factor 2. The largest observed error/bound ratio of each case is printed.

#include "reference_attention.hpp"
#include "test_util.hpp"

#include "eigenformer/io/safetensors.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef EIGENFORMER_TEST_DATA_DIR
#define EIGENFORMER_TEST_DATA_DIR "tests/data"
#endif

namespace {

using eftest::RefAttentionOptions;
using eftest::RefMatrix;
using eftest::reference_attention;
constexpr double kInfD = std::numeric_limits<double>::infinity();

/// A [rows, cols] matrix from a row-major list.
RefMatrix mat(long rows, long cols, std::vector<double> values) {
  EXPECT_EQ(static_cast<long>(values.size()), rows * cols);
  RefMatrix m(rows, cols);
  for (long i = 0; i < rows * cols; ++i) m.data()[i] = values[static_cast<std::size_t>(i)];
  return m;
}

/// Mean of v's rows [lo, hi].
RefMatrix mean_rows(const RefMatrix& v, long lo, long hi) {
  return v.middleRows(lo, hi - lo + 1).colwise().mean();
}

// ------------------------------------------------------------------------------------------------
// Hand-computed cases
// ------------------------------------------------------------------------------------------------

TEST(ReferenceAttention, TwoKeysExactSoftmaxAndLse) {
  // scale 1, q = 1, k = [0, ln 3]: logits [0, ln 3] -> p = [1/4, 3/4]; v = [2, 6] -> 0.5 + 4.5 = 5.
  const RefMatrix q = mat(1, 1, {1.0}), k = mat(2, 1, {0.0, std::log(3.0)}), v = mat(2, 1, {2.0, 6.0});
  RefAttentionOptions o;
  o.scale = 1.0;
  o.causal = false;
  RefMatrix lse;
  std::vector<RefMatrix> p;
  const RefMatrix out = reference_attention(q, k, v, {0}, {0, 1}, 1, 1, o, &lse, &p);
  EXPECT_NEAR(out(0, 0), 5.0, 1e-15);
  EXPECT_NEAR(lse(0, 0), std::log(4.0), 1e-15);
  EXPECT_NEAR(p[0](0, 0), 0.25, 1e-16);
  EXPECT_NEAR(p[0](0, 1), 0.75, 1e-16);
}

TEST(ReferenceAttention, DefaultScaleIsInverseSqrtHeadDim) {
  // d = 4, q = k0 = [1,1,1,1], k1 = 0: logit 4 * scale. Default scale 1/2 -> logits [2, 0].
  const RefMatrix q = mat(1, 4, {1, 1, 1, 1}), k = mat(2, 4, {1, 1, 1, 1, 0, 0, 0, 0}), v = mat(2, 1, {1, 0});
  RefAttentionOptions o;
  o.causal = false;
  const RefMatrix out = reference_attention(q, k, v, {0}, {0, 1}, 1, 1, o);
  EXPECT_NEAR(out(0, 0), std::exp(2.0) / (std::exp(2.0) + 1.0), 1e-15);
}

TEST(ReferenceAttention, CausalEqualLogitsGiveRunningMeans) {
  // q = 0: every visible logit is 0, so query i averages v_0..v_i.
  std::mt19937 g = eftest::rng(1);
  const long T = 5;
  const RefMatrix q = RefMatrix::Zero(T, 3), k = eftest::random_matrix<double>(T, 3, g);
  const RefMatrix v = eftest::random_matrix<double>(T, 2, g);
  RefMatrix lse;
  const RefMatrix out = reference_attention(q, k, v, eftest::iota_positions(T), eftest::iota_positions(T), 1, 1,
                                            RefAttentionOptions{}, &lse);
  for (long i = 0; i < T; ++i) {
    EXPECT_LT((out.row(i) - mean_rows(v, 0, i)).norm(), 1e-15) << "row " << i;
    EXPECT_NEAR(lse(i, 0), std::log(static_cast<double>(i + 1)), 1e-15);
  }
}

TEST(ReferenceAttention, CausalUsesPositionsNotRowIndices) {
  // A decode step: one query at position 9 over a cache of keys at positions 6..10 (key 10 is a
  // future slot, e.g. a preallocated cache). Keys 6..9 are visible.
  const RefMatrix q = RefMatrix::Zero(1, 2), k = RefMatrix::Zero(5, 2), v = mat(5, 1, {1, 2, 3, 4, 100});
  const RefMatrix out = reference_attention(q, k, v, {9}, {6, 7, 8, 9, 10}, 1, 1, RefAttentionOptions{});
  EXPECT_NEAR(out(0, 0), 2.5, 1e-15);
}

TEST(ReferenceAttention, SlidingWindowMatchesTransformersDocstring) {
  // masking_utils.sdpa_mask docstring, sliding_window=3 over 5 tokens:
  //   0 ■ ⬚ ⬚ ⬚ ⬚ / 1 ■ ■ ⬚ ⬚ ⬚ / 2 ■ ■ ■ ⬚ ⬚ / 3 ⬚ ■ ■ ■ ⬚ / 4 ⬚ ⬚ ■ ■ ■
  const int want[5][5] = {{1, 0, 0, 0, 0}, {1, 1, 0, 0, 0}, {1, 1, 1, 0, 0}, {0, 1, 1, 1, 0}, {0, 0, 1, 1, 1}};
  const long T = 5;
  RefAttentionOptions o;
  o.sliding_window = 3;
  std::vector<RefMatrix> p;
  reference_attention(RefMatrix::Zero(T, 2), RefMatrix::Zero(T, 2), RefMatrix::Zero(T, 1),
                      eftest::iota_positions(T), eftest::iota_positions(T), 1, 1, o, nullptr, &p);
  for (long i = 0; i < T; ++i)
    for (long j = 0; j < T; ++j) EXPECT_EQ(p[0](i, j) > 0, want[i][j] == 1) << i << "," << j;
}

TEST(ReferenceAttention, SlidingWindowKeepsWKeysAndLegacyConventionKeepsWPlusOne) {
  // HF 4.57: visible iff 0 <= q - k < W (W keys). Legacy AttentionMaskConverter / mistral-src:
  // visible iff 0 <= q - k <= W (W + 1 keys) == this reference with sliding_window = W + 1.
  std::mt19937 g = eftest::rng(2);
  const long T = 11, W = 4;
  const RefMatrix q = eftest::random_matrix<double>(T, 8, g), k = eftest::random_matrix<double>(T, 4, g);
  const RefMatrix v = eftest::random_matrix<double>(T, 3, g);
  const auto pos = eftest::iota_positions(T, 7);

  RefAttentionOptions hf;
  hf.sliding_window = W;
  std::vector<RefMatrix> p;
  const RefMatrix out_hf = reference_attention(q, k, v, pos, pos, 2, 1, hf, nullptr, &p);
  for (long i = 0; i < T; ++i) {
    long n = 0;
    for (long j = 0; j < T; ++j) n += p[0](i, j) > 0;
    EXPECT_EQ(n, std::min(i + 1, W)) << "row " << i;
  }
  // The same mask written as an arbitrary `allow` predicate.
  RefAttentionOptions by_allow;
  by_allow.allow = [&](long, long i, long j) { return pos[std::size_t(i)] - pos[std::size_t(j)] < W; };
  EXPECT_LT((reference_attention(q, k, v, pos, pos, 2, 1, by_allow) - out_hf).cwiseAbs().maxCoeff(), 1e-15);

  RefAttentionOptions legacy;  // q - k <= W
  legacy.allow = [&](long, long i, long j) { return pos[std::size_t(i)] - pos[std::size_t(j)] <= W; };
  RefAttentionOptions hf_plus_one;
  hf_plus_one.sliding_window = W + 1;
  const RefMatrix out_legacy = reference_attention(q, k, v, pos, pos, 2, 1, legacy);
  EXPECT_LT((reference_attention(q, k, v, pos, pos, 2, 1, hf_plus_one) - out_legacy).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_GT((out_legacy - out_hf).cwiseAbs().maxCoeff(), 1e-3);  // the off-by-one matters
}

TEST(ReferenceAttention, BidirectionalSlidingWindowIsSymmetric) {
  const long T = 7, W = 2;
  RefAttentionOptions o;
  o.causal = false;
  o.sliding_window = W;
  std::vector<RefMatrix> p;
  reference_attention(RefMatrix::Zero(T, 1), RefMatrix::Zero(T, 1), RefMatrix::Zero(T, 1),
                      eftest::iota_positions(T), eftest::iota_positions(T), 1, 1, o, nullptr, &p);
  for (long i = 0; i < T; ++i)
    for (long j = 0; j < T; ++j) EXPECT_EQ(p[0](i, j) > 0, std::abs(i - j) < W) << i << "," << j;
}

TEST(ReferenceAttention, SoftcapIsAppliedToScaledLogitBeforeBiasAndMask) {
  // Two keys, one query at position 1. Logits before the cap: scale * q.k = [6, 0.5] with scale 0.5.
  // Gemma 2 order: cap first (c = 2): [2 tanh 3, 2 tanh 0.25], then ALiBi slope 1 (k - q): [-1, 0].
  const RefMatrix q = mat(1, 1, {1.0}), k = mat(2, 1, {12.0, 1.0}), v = mat(2, 1, {1.0, 0.0});
  RefAttentionOptions o;
  o.scale = 0.5;
  o.softcap = 2.0;
  o.alibi_slopes = {1.0};
  RefMatrix lse;
  const RefMatrix out = reference_attention(q, k, v, {1}, {0, 1}, 1, 1, o, &lse);
  const double s0 = 2 * std::tanh(3.0) - 1.0, s1 = 2 * std::tanh(0.25);
  EXPECT_NEAR(out(0, 0), std::exp(s0) / (std::exp(s0) + std::exp(s1)), 1e-15);
  EXPECT_NEAR(lse(0, 0), std::log(std::exp(s0) + std::exp(s1)), 1e-15);
  // Capping after the additive HF mask would turn a masked logit (-3.4e38) into -c and leak weight
  // exp(-c) to the future key; the reference excludes masked keys: query 0 sees only key 0.
  std::vector<RefMatrix> p;
  reference_attention(mat(2, 1, {1, 1}), k, v, {0, 1}, {0, 1}, 1, 1, o, nullptr, &p);
  EXPECT_EQ(p[0](0, 1), 0.0);
  EXPECT_EQ(p[0](0, 0), 1.0);
}

TEST(ReferenceAttention, SinkJoinsTheDenominatorAndItsColumnIsDropped) {
  // One key with logit s = 1 (scale 1), sink t = 0.5: p = e^s / (e^s + e^t), out = p v.
  const RefMatrix q = mat(1, 1, {1.0}), k = mat(1, 1, {1.0}), v = mat(1, 2, {3.0, -2.0});
  RefAttentionOptions o;
  o.scale = 1.0;
  o.sinks = {0.5};
  RefMatrix lse;
  std::vector<RefMatrix> p;
  const RefMatrix out = reference_attention(q, k, v, {0}, {0}, 1, 1, o, &lse, &p);
  const double pk = std::exp(1.0) / (std::exp(1.0) + std::exp(0.5));
  EXPECT_NEAR(p[0](0, 0), pk, 1e-15);
  EXPECT_NEAR(out(0, 0), 3.0 * pk, 1e-15);
  EXPECT_NEAR(out(0, 1), -2.0 * pk, 1e-15);
  EXPECT_NEAR(lse(0, 0), std::log(std::exp(1.0) + std::exp(0.5)), 1e-15);
  // Weights over real keys sum to 1 - exp(sink - lse).
  EXPECT_NEAR(p[0](0, 0) + std::exp(0.5 - lse(0, 0)), 1.0, 1e-15);
}

TEST(ReferenceAttention, FullyMaskedRowsGiveZeroAndLseMinusInfOrTheSink) {
  const RefMatrix q = mat(2, 1, {1, 1}), k = mat(2, 1, {1, 2}), v = mat(2, 1, {5, 7});
  RefAttentionOptions o;
  o.key_valid = {false, true};  // left padding: query 0 sees nothing
  RefMatrix lse;
  RefMatrix out = reference_attention(q, k, v, {0, 1}, {0, 1}, 1, 1, o, &lse);
  EXPECT_EQ(out(0, 0), 0.0);
  EXPECT_EQ(lse(0, 0), -kInfD);
  EXPECT_NEAR(out(1, 0), 7.0, 1e-15);
  o.sinks = {-1.5};
  out = reference_attention(q, k, v, {0, 1}, {0, 1}, 1, 1, o, &lse);
  EXPECT_EQ(out(0, 0), 0.0);
  EXPECT_EQ(lse(0, 0), -1.5);
  // An empty key set and a score_mod that masks everything with -inf are fully masked too.
  out = reference_attention(q, RefMatrix(0, 1), RefMatrix(0, 1), {0, 1}, {}, 1, 1, RefAttentionOptions{}, &lse);
  EXPECT_TRUE(out.isZero(0.0));
  EXPECT_EQ(lse(1, 0), -kInfD);
  RefAttentionOptions all_minus_inf;
  all_minus_inf.score_mod = [](double, long, long, long) { return -kInfD; };
  out = reference_attention(q, k, v, {0, 1}, {0, 1}, 1, 1, all_minus_inf, &lse);
  EXPECT_TRUE(out.isZero(0.0));
  EXPECT_EQ(lse(1, 0), -kInfD);
}

TEST(ReferenceAttention, AlibiSlopesMatchBloomFormula) {
  // Power of two: 2^(-8h/n). n = 3: slopes of 2 (2^-4, 2^-8), then 2^-2 (odd slopes of 4).
  const std::map<long, std::vector<double>> want = {
      {1, {std::exp2(-8.0)}},
      {2, {std::exp2(-4.0), std::exp2(-8.0)}},
      {3, {std::exp2(-4.0), std::exp2(-8.0), std::exp2(-2.0)}},
      {4, {std::exp2(-2.0), std::exp2(-4.0), std::exp2(-6.0), std::exp2(-8.0)}},
      {6, {std::exp2(-2.0), std::exp2(-4.0), std::exp2(-6.0), std::exp2(-8.0), std::exp2(-1.0), std::exp2(-3.0)}},
      {8, {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625}},
  };
  for (const auto& [n, s] : want) {
    const auto got = eftest::alibi_slopes(n);
    ASSERT_EQ(got.size(), s.size()) << n;
    for (std::size_t h = 0; h < s.size(); ++h) EXPECT_DOUBLE_EQ(got[h], s[h]) << "n=" << n << " h=" << h;
  }
  EXPECT_THROW(eftest::alibi_slopes(0), std::invalid_argument);
}

TEST(ReferenceAttention, AlibiBiasIsSlopeTimesKeyMinusQueryPosition) {
  // q = 0, slope 0.5, query at position 2: logits [-1, -0.5, 0] over keys 0, 1, 2.
  const RefMatrix v = mat(3, 1, {1, 10, 100});
  RefAttentionOptions o;
  o.alibi_slopes = {0.5};
  const RefMatrix out =
      reference_attention(RefMatrix::Zero(1, 2), RefMatrix::Zero(3, 2), v, {2}, {0, 1, 2}, 1, 1, o);
  const double a = std::exp(-1.0), b = std::exp(-0.5), c = 1.0;
  EXPECT_NEAR(out(0, 0), (a * 1 + b * 10 + c * 100) / (a + b + c), 1e-13);
  // Bloom's form slope * k_pos (no - q_pos) differs by a per-row constant: same result.
  RefAttentionOptions bloom;
  bloom.alibi_slopes.clear();
  bloom.score_mod = [](double s, long, long, long j) { return s + 0.5 * static_cast<double>(j); };
  EXPECT_NEAR(reference_attention(RefMatrix::Zero(1, 2), RefMatrix::Zero(3, 2), v, {2}, {0, 1, 2}, 1, 1, bloom)(0, 0),
              out(0, 0), 1e-13);
}

TEST(ReferenceAttention, GroupedQueryHeadsReadKvHeadHOverGroup) {
  // 6 query heads over 2 kv heads (groups of 3) equals MHA with each kv head repeated 3 times
  // (HF repeat_kv); MQA (1 kv head) equals MHA with it repeated 6 times. dv != d.
  std::mt19937 g = eftest::rng(3);
  const long T = 9, d = 4, dv = 3, nh = 6;
  const RefMatrix q = eftest::random_matrix<double>(T, nh * d, g);
  for (long nkv : {1L, 2L, 3L, 6L}) {
    const RefMatrix k = eftest::random_matrix<double>(T, nkv * d, g), v = eftest::random_matrix<double>(T, nkv * dv, g);
    RefMatrix k_rep(T, nh * d), v_rep(T, nh * dv);
    for (long h = 0; h < nh; ++h) {
      const long kv = h / (nh / nkv);
      k_rep.middleCols(h * d, d) = k.middleCols(kv * d, d);
      v_rep.middleCols(h * dv, dv) = v.middleCols(kv * dv, dv);
    }
    RefAttentionOptions o;
    o.sinks = {0.1, -0.2, 0.3, 0.0, 1.0, -1.0};
    o.alibi_slopes = eftest::alibi_slopes(nh);
    const auto pos = eftest::iota_positions(T);
    RefMatrix lse_gqa, lse_mha;
    const RefMatrix gqa = reference_attention(q, k, v, pos, pos, nh, nkv, o, &lse_gqa);
    const RefMatrix mha = reference_attention(q, k_rep, v_rep, pos, pos, nh, nh, o, &lse_mha);
    EXPECT_EQ(gqa.cols(), nh * dv);
    EXPECT_LT((gqa - mha).cwiseAbs().maxCoeff(), 1e-14) << "n_kv_heads=" << nkv;
    EXPECT_LT((lse_gqa - lse_mha).cwiseAbs().maxCoeff(), 1e-14) << "n_kv_heads=" << nkv;
  }
}

TEST(ReferenceAttention, PaddingAndAllowEqualDroppingTheKeys) {
  std::mt19937 g = eftest::rng(4);
  const long Tq = 3, Tk = 8, d = 5;
  const RefMatrix q = eftest::random_matrix<double>(Tq, 2 * d, g), k = eftest::random_matrix<double>(Tk, 2 * d, g);
  const RefMatrix v = eftest::random_matrix<double>(Tk, 2 * d, g);
  const std::vector<bool> valid = {true, false, true, true, false, true, false, true};
  RefMatrix k_kept(0, 2 * d), v_kept(0, 2 * d);
  std::vector<long> kept_pos;
  for (long j = 0; j < Tk; ++j) {
    if (!valid[std::size_t(j)]) continue;
    k_kept.conservativeResize(k_kept.rows() + 1, Eigen::NoChange);
    v_kept.conservativeResize(v_kept.rows() + 1, Eigen::NoChange);
    k_kept.bottomRows(1) = k.row(j);
    v_kept.bottomRows(1) = v.row(j);
    kept_pos.push_back(j);
  }
  RefAttentionOptions o;
  o.causal = false;
  o.key_valid = valid;
  const RefMatrix want = reference_attention(q, k_kept, v_kept, {0, 1, 2}, kept_pos, 2, 2, [] {
    RefAttentionOptions b;
    b.causal = false;
    return b;
  }());
  EXPECT_LT((reference_attention(q, k, v, {0, 1, 2}, eftest::iota_positions(Tk), 2, 2, o) - want).cwiseAbs().maxCoeff(),
            1e-15);
  RefAttentionOptions by_allow;
  by_allow.causal = false;
  by_allow.allow = [&](long, long, long j) { return valid[std::size_t(j)]; };
  EXPECT_LT(
      (reference_attention(q, k, v, {0, 1, 2}, eftest::iota_positions(Tk), 2, 2, by_allow) - want).cwiseAbs().maxCoeff(),
      1e-15);
  // `allow` sees the query head: mask head 1 completely.
  RefAttentionOptions head1;
  head1.causal = false;
  head1.allow = [](long h, long, long) { return h == 0; };
  const RefMatrix out = reference_attention(q, k, v, {0, 1, 2}, eftest::iota_positions(Tk), 2, 2, head1);
  EXPECT_TRUE(out.rightCols(d).isZero(0.0));
  EXPECT_FALSE(out.leftCols(d).isZero(0.0));
}

TEST(ReferenceAttention, LseMergesTwoHalvesOfTheKeys) {
  // Split-KV: attention over keys A and B separately, merged with their lse, equals attention over
  // A u B (what flash kernels and partial decode rely on). The sink belongs to one half only.
  std::mt19937 g = eftest::rng(5);
  const long Tq = 4, Tk = 10, d = 6, nh = 2;
  const RefMatrix q = eftest::random_matrix<double>(Tq, nh * d, g), k = eftest::random_matrix<double>(Tk, d, g);
  const RefMatrix v = eftest::random_matrix<double>(Tk, d, g);
  const auto qp = eftest::iota_positions(Tq, 6), kp = eftest::iota_positions(Tk);
  RefAttentionOptions o;
  o.sinks = {0.7, -0.4};
  RefMatrix lse_all, lse_a, lse_b;
  const RefMatrix all = reference_attention(q, k, v, qp, kp, nh, 1, o, &lse_all);
  const RefMatrix a = reference_attention(q, k.topRows(5), v.topRows(5), qp, {0, 1, 2, 3, 4}, nh, 1, o, &lse_a);
  RefAttentionOptions no_sink;
  const RefMatrix b = reference_attention(q, k.bottomRows(5), v.bottomRows(5), qp, {5, 6, 7, 8, 9}, nh, 1, no_sink, &lse_b);
  for (long i = 0; i < Tq; ++i)
    for (long h = 0; h < nh; ++h) {
      const double m = std::max(lse_a(i, h), lse_b(i, h));
      const double wa = std::exp(lse_a(i, h) - m), wb = std::exp(lse_b(i, h) - m);
      EXPECT_NEAR(m + std::log(wa + wb), lse_all(i, h), 1e-13);
      for (long c = 0; c < d; ++c)
        EXPECT_NEAR((wa * a(i, h * d + c) + wb * b(i, h * d + c)) / (wa + wb), all(i, h * d + c), 1e-13);
    }
}

TEST(ReferenceAttention, NaNPropagatesToItsRowOnly) {
  RefMatrix q = RefMatrix::Ones(3, 2), k = RefMatrix::Ones(3, 2), v = RefMatrix::Ones(3, 2);
  q(1, 0) = std::nan("");
  RefMatrix lse;
  const RefMatrix out = reference_attention(q, k, v, {0, 1, 2}, {0, 1, 2}, 1, 1, RefAttentionOptions{}, &lse);
  EXPECT_FALSE(out.row(0).hasNaN());
  EXPECT_TRUE(std::isnan(out(1, 0)) && std::isnan(out(1, 1)) && std::isnan(lse(1, 0)));
  EXPECT_FALSE(out.row(2).hasNaN());
  v(2, 1) = std::nan("");  // a NaN value reaches every query that sees key 2
  const RefMatrix out2 = reference_attention(RefMatrix::Ones(3, 2), k, v, {0, 1, 2}, {0, 1, 2}, 1, 1, {});
  EXPECT_FALSE(std::isnan(out2(1, 1)));
  EXPECT_TRUE(std::isnan(out2(2, 1)));
  EXPECT_FALSE(std::isnan(out2(2, 0)));
}

TEST(ReferenceAttention, RejectsInconsistentShapes) {
  const RefMatrix q = RefMatrix::Zero(2, 8), k = RefMatrix::Zero(3, 4), v = RefMatrix::Zero(3, 4);
  const std::vector<long> qp = {0, 1}, kp = {0, 1, 2};
  RefAttentionOptions o;
  EXPECT_NO_THROW(reference_attention(q, k, v, qp, kp, 2, 1, o));
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 3, 1, o), std::invalid_argument);   // 8 % 3
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 2, 3, o), std::invalid_argument);   // 2 % 3
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 4, 1, o), std::invalid_argument);   // d 2 vs 4
  EXPECT_THROW(reference_attention(q, k, v, {0}, kp, 2, 1, o), std::invalid_argument);  // q_pos size
  EXPECT_THROW(reference_attention(q, k, RefMatrix::Zero(2, 4), qp, kp, 2, 1, o), std::invalid_argument);
  RefAttentionOptions bad = o;
  bad.sinks = {1.0};
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 2, 1, bad), std::invalid_argument);
  bad = o;
  bad.alibi_slopes = {1.0, 2.0, 3.0};
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 2, 1, bad), std::invalid_argument);
  bad = o;
  bad.key_valid = {true};
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 2, 1, bad), std::invalid_argument);
  bad = o;
  bad.sliding_window = -1;
  EXPECT_THROW(reference_attention(q, k, v, qp, kp, 2, 1, bad), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------
// Golden fixtures from transformers
// ------------------------------------------------------------------------------------------------

const std::vector<std::string>& golden_cases() {
  static const std::vector<std::string> c = {
      "llama_mha",
      "llama_gqa_llama3_rope",
      "llama_mqa_linear_rope_offset",
      "llama_bias_head_dim",
      "llama_left_padding",
      "mistral_sliding_window",
      "gemma2_sliding",
      "gemma2_global",
      "bloom_alibi",
      "bloom_alibi_3heads_left_padding",
      "gpt_oss_sliding_left_padding",
      "gpt_oss_full",
      "bert_bidirectional_right_padding",
  };
  return c;
}

constexpr double kU = 0x1p-24;  // float32 unit roundoff
double gamma_n(double n) { return n * kU / (1 - n * kU); }

std::string golden_path(const std::string& name) {
  return std::string(EIGENFORMER_TEST_DATA_DIR) + "/golden/attention/" + name + ".safetensors";
}

struct Meta {
  const std::map<std::string, std::string>& m;
  const std::string& str(const std::string& key) const {
    const auto it = m.find(key);
    if (it == m.end()) throw std::runtime_error("fixture metadata lacks '" + key + "'");
    return it->second;
  }
  long integer(const std::string& key) const { return std::stol(str(key)); }
  double real(const std::string& key) const { return std::stod(str(key)); }
  bool boolean(const std::string& key) const {
    const std::string& s = str(key);
    if (s != "true" && s != "false") throw std::runtime_error("'" + key + "' is not true/false: " + s);
    return s == "true";
  }
};

/// Checks y = x W^T + b (W [N, K] PyTorch layout, b optional) within twice the dot-product bound
/// gamma_{K+1} (sum_k |x_k W_jk| + |b_j|). Returns the largest error/bound ratio.
double check_linear(const RefMatrix& x, const RefMatrix& W, const eigenformer::Vector<double>* b, const RefMatrix& y,
                    const std::string& what) {
  EXPECT_EQ(y.rows(), x.rows()) << what;
  EXPECT_EQ(y.cols(), W.rows()) << what;
  if (y.rows() != x.rows() || y.cols() != W.rows()) return kInfD;
  const RefMatrix exact = x * W.transpose();
  const RefMatrix mag = x.cwiseAbs() * W.cwiseAbs().transpose();
  double worst = 0;
  for (long i = 0; i < y.rows(); ++i)
    for (long j = 0; j < y.cols(); ++j) {
      const double bj = b ? (*b)(j) : 0.0;
      const double bound = 2 * gamma_n(static_cast<double>(x.cols() + 1)) * (mag(i, j) + std::abs(bj)) + 1e-300;
      const double err = std::abs(y(i, j) - (exact(i, j) + bj));
      worst = std::max(worst, err / bound);
      EXPECT_LE(err, bound) << what << " (" << i << ", " << j << ")";
    }
  return worst;
}

class GoldenAttention : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenAttention, ReferenceMatchesTransformers) {
  const std::string name = GetParam();
  const auto st = eigenformer::SafeTensors::open(golden_path(name));
  const Meta meta{st.metadata()};
  ASSERT_EQ(meta.str("layer"), "attention");
  ASSERT_EQ(meta.str("case"), name);
  const std::string model = meta.str("model_type");
  const long nh = meta.integer("derived.num_heads"), nkv = meta.integer("derived.num_kv_heads");
  const long d = meta.integer("derived.head_dim");

  const RefMatrix x = st.matrix<double>("input.hidden_states", -1, -1);
  const long T = x.rows(), hidden = x.cols();
  const RefMatrix q = st.matrix<double>("intermediate.query_states", T, nh * d);
  const RefMatrix k = st.matrix<double>("intermediate.key_states", T, nkv * d);
  const RefMatrix v = st.matrix<double>("intermediate.value_states", T, nkv * d);
  const RefMatrix attn_out = st.matrix<double>("intermediate.attn_output", T, nh * d);
  const std::vector<double> attn_w = st.to_vector<double>("intermediate.attn_weights");
  ASSERT_EQ(static_cast<long>(attn_w.size()), nh * T * T);

  // The HF config fields this layer's math comes from, cross-checked against the derived ones.
  if (model == "bloom") {
    EXPECT_EQ(nh, meta.integer("n_head"));
    EXPECT_EQ(nh * d, meta.integer("hidden_size"));
  } else {
    EXPECT_EQ(nh, meta.integer("num_attention_heads"));
    if (model != "bert") {
      EXPECT_EQ(nkv, meta.integer("num_key_value_heads"));
    }
  }
  RefAttentionOptions o;
  const double want_scale = model == "gemma2" ? 1.0 / std::sqrt(meta.real("query_pre_attn_scalar"))
                                              : 1.0 / std::sqrt(static_cast<double>(d));
  o.scale = meta.real("derived.scaling");
  EXPECT_NEAR(o.scale, want_scale, 1e-15 * want_scale);
  o.causal = meta.boolean("derived.causal");
  EXPECT_EQ(o.causal, model != "bert");
  o.sliding_window = meta.integer("derived.sliding_window");
  if (meta.str("derived.layer_type") == "sliding_attention") {
    EXPECT_EQ(o.sliding_window, meta.integer("sliding_window"));
  } else {
    EXPECT_EQ(o.sliding_window, 0);
  }
  o.softcap = meta.real("derived.softcap");
  if (model == "gemma2") {
    EXPECT_EQ(o.softcap, meta.real("attn_logit_softcapping"));
  }
  if (meta.boolean("derived.alibi")) {
    o.alibi_slopes = eftest::alibi_slopes(nh);
    const auto stored = st.to_vector<double>("intermediate.alibi_slopes");
    ASSERT_EQ(static_cast<long>(stored.size()), nh);
    for (long h = 0; h < nh; ++h)
      EXPECT_NEAR(stored[std::size_t(h)], o.alibi_slopes[std::size_t(h)], 1e-7 * o.alibi_slopes[std::size_t(h)]);
  }
  if (meta.boolean("derived.sinks")) {
    const auto s = st.vector<double>("sinks", nh);
    o.sinks.assign(s.data(), s.data() + s.size());
  }
  const bool padded = st.contains("input.attention_mask");
  EXPECT_EQ(padded, meta.boolean("derived.padding"));
  if (padded) {
    const auto am = st.to_vector<long>("input.attention_mask");
    ASSERT_EQ(static_cast<long>(am.size()), T);
    for (long a : am) o.key_valid.push_back(a != 0);
  }
  const auto pos = eftest::iota_positions(T);  // HF masks use cache positions, 0..T-1 here

  RefMatrix lse;
  std::vector<RefMatrix> probs;
  const RefMatrix out = reference_attention(q, k, v, pos, pos, nh, nkv, o, &lse, &probs);

  // Compare every row the reference does not fully mask. (For a row with no visible key and no sink,
  // HF's additive finfo.min mask makes every logit the same, so eager softmax returns a uniform
  // average over ALL keys there: an artifact, not a result. With a sink, gpt-oss gives exactly 0 and
  // so does the reference: those rows are compared.)
  const long group = nh / nkv;
  double worst_out = 0, worst_p = 0, max_abs = 0;
  long compared = 0;
  for (long i = 0; i < T; ++i) {
    for (long h = 0; h < nh; ++h) {
      if (lse(i, h) == -kInfD) continue;
      ++compared;
      const long g = h / group;
      // E: the bound on the float32 error of any visible logit of this row.
      double E = 0;
      for (long j = 0; j < T; ++j) {
        bool visible = !o.causal || j <= i;  // masked keys contribute no error term
        if (o.sliding_window > 0) visible = visible && eftest::in_sliding_window(i, j, o.sliding_window, o.causal);
        if (!o.key_valid.empty()) visible = visible && o.key_valid[std::size_t(j)];
        if (!visible) continue;
        double mag = 0;
        for (long c = 0; c < d; ++c) mag += std::abs(q(i, h * d + c) * k(j, g * d + c));
        double s_abs = o.scale * mag;
        if (!o.alibi_slopes.empty()) s_abs += std::abs(o.alibi_slopes[std::size_t(h)] * double(j - i));
        E = std::max(E, gamma_n(double(d + 1)) * o.scale * mag + 4 * kU * s_abs);
      }
      if (!o.sinks.empty()) E = std::max(E, 4 * kU * std::abs(o.sinks[std::size_t(h)]));
      const double rel = 2 * E + (2 * double(T) + 8) * kU;
      for (long c = 0; c < d; ++c) {
        double pv = 0;
        for (long j = 0; j < T; ++j) pv += probs[std::size_t(h)](i, j) * std::abs(v(j, g * d + c));
        const double bound = 2 * pv * rel + 1e-300;
        const double err = std::abs(out(i, h * d + c) - attn_out(i, h * d + c));
        max_abs = std::max(max_abs, err);
        worst_out = std::max(worst_out, err / bound);
        EXPECT_LE(err, bound) << name << ": attn_output row " << i << " head " << h << " col " << c;
      }
      for (long j = 0; j < T; ++j) {
        const double p = probs[std::size_t(h)](i, j);
        const double hf = attn_w[std::size_t((h * T + i) * T + j)];
        const double bound = 2 * p * (2 * E + (double(T) + 8) * kU) + 1e-300;
        const double err = std::abs(p - hf);
        worst_p = std::max(worst_p, err / bound);
        EXPECT_LE(err, bound) << name << ": attn_weights head " << h << " row " << i << " key " << j;
      }
    }
  }
  EXPECT_GT(compared, nh * T / 2) << name << ": too few rows compared";

  // The fixture's own consistency: projections, o_proj, RoPE rotation, Bloom's fused layout.
  double worst_lin = 0;
  const auto bias = [&](const std::string& n, long len) -> std::optional<eigenformer::Vector<double>> {
    if (!st.contains(n)) return std::nullopt;
    return st.vector<double>(n, len);
  };
  const auto lin = [&](const std::string& prefix, const RefMatrix& in, long n_out, const RefMatrix& y) {
    const RefMatrix W = st.matrix<double>(prefix + ".weight", n_out, in.cols());
    const auto b = bias(prefix + ".bias", n_out);
    worst_lin = std::max(worst_lin, check_linear(in, W, b ? &*b : nullptr, y, name + ": " + prefix));
  };
  const RefMatrix y = st.matrix<double>("output.hidden_states", T, hidden);
  if (model == "bloom") {
    lin("intermediate.q_proj", x, nh * d, q);
    lin("intermediate.k_proj", x, nh * d, k);
    lin("intermediate.v_proj", x, nh * d, v);
    lin("dense", attn_out, hidden, y);
    // Fused row h*3d + t*d + i is row h*d + i of projection t (0 query, 1 key, 2 value).
    const RefMatrix fused = st.matrix<double>("query_key_value.weight", 3 * hidden, hidden);
    const auto fused_b = st.vector<double>("query_key_value.bias", 3 * hidden);
    const char* parts[3] = {"intermediate.q_proj", "intermediate.k_proj", "intermediate.v_proj"};
    for (int t = 0; t < 3; ++t) {
      const RefMatrix W = st.matrix<double>(std::string(parts[t]) + ".weight", hidden, hidden);
      const auto b = st.vector<double>(std::string(parts[t]) + ".bias", hidden);
      for (long h = 0; h < nh; ++h)
        for (long i = 0; i < d; ++i) {
          EXPECT_TRUE(W.row(h * d + i) == fused.row(h * 3 * d + t * d + i)) << parts[t] << " row " << h * d + i;
          EXPECT_EQ(b(h * d + i), fused_b(h * 3 * d + t * d + i)) << parts[t];
        }
    }
  } else if (model == "bert") {
    lin("query", x, nh * d, q);
    lin("key", x, nh * d, k);
    lin("value", x, nh * d, v);
    EXPECT_TRUE(y == attn_out) << "BertSelfAttention's output is its attention output";
  } else {
    const RefMatrix q0 = st.matrix<double>("intermediate.query_states_pre_rope", T, nh * d);
    const RefMatrix k0 = st.matrix<double>("intermediate.key_states_pre_rope", T, nkv * d);
    lin("q_proj", x, nh * d, q0);
    lin("k_proj", x, nkv * d, k0);
    lin("v_proj", x, nkv * d, v);
    lin("o_proj", attn_out, hidden, y);
    // RoPE (half-split, non-interleaved, as rotate_half) rotates the pairs (c, c + d/2) of each head
    // and scales cos/sin by attention_scaling (YaRN's mscale): pair norms scale by that factor.
    const double mscale = meta.real("derived.rope_attention_scaling");
    const auto check_rope = [&](const RefMatrix& rot, const RefMatrix& pre, long heads, const char* what) {
      for (long i = 0; i < T; ++i)
        for (long h = 0; h < heads; ++h)
          for (long c = 0; c < d / 2; ++c) {
            const long a = h * d + c, b = a + d / 2;
            const double want = mscale * std::hypot(pre(i, a), pre(i, b));
            EXPECT_NEAR(std::hypot(rot(i, a), rot(i, b)), want, 1e-5 * (1 + want))
                << name << ": " << what << " token " << i << " head " << h << " pair " << c;
          }
    };
    check_rope(q, q0, nh, "query RoPE");
    check_rope(k, k0, nkv, "key RoPE");
  }

  std::printf("[ golden   ] %-34s T=%-2ld heads=%ld/%ld d=%-2ld  max|out err|=%.2e  err/bound: out %.3f p %.3f "
              "linear %.3f\n",
              name.c_str(), T, nh, nkv, d, max_abs, worst_out, worst_p, worst_lin);
}

INSTANTIATE_TEST_SUITE_P(Transformers, GoldenAttention, ::testing::ValuesIn(golden_cases()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(GoldenAttentionFiles, EveryFixtureIsListedAndSmall) {
  // Adding a fixture without listing it above (or the reverse) fails here.
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(EIGENFORMER_TEST_DATA_DIR) / "golden" / "attention";
  std::vector<std::string> on_disk;
  std::uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") {
      on_disk.push_back(e.path().stem().string());
      total += e.file_size();
    }
  std::sort(on_disk.begin(), on_disk.end());
  std::vector<std::string> listed = golden_cases();
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(on_disk, listed);
  EXPECT_LT(total, 1000u * 1000u) << "fixtures should stay well under 1 MB";
}

}  // namespace
