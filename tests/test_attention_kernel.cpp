// The flash-attention op against the double-precision reference attention: every mask/bias option,
// MHA/GQA/MQA, prefill and decode paths, several key spans, f16/bf16 keys and values, log-sum-exp,
// fully masked rows, and bit-identical results across thread counts.
#include <eigenformer/ops/attention.hpp>

#include <array>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefAttentionOptions;
using eftest::RefMatrix;

namespace {

struct Case {
  Index heads, kv_heads, d, dv;
  Index tq, tk;  // queries are the last tq positions of tk keys (bottom-right aligned)
  bool causal = true;
  Index window = 0;
  float softcap = 0.0f;
  bool alibi = false, sinks = false, padding = false;
  int spans = 1;  // split the keys into this many spans
};

std::string name(const Case& c) {
  std::ostringstream os;
  os << "H" << c.heads << "/" << c.kv_heads << " d" << c.d << "/" << c.dv << " Tq" << c.tq << " Tk" << c.tk
     << (c.causal ? " causal" : " bidir") << " win" << c.window << " cap" << c.softcap << (c.alibi ? " alibi" : "")
     << (c.sinks ? " sinks" : "") << (c.padding ? " pad" : "") << " spans" << c.spans;
  return os.str();
}

template <class E>
struct Inputs {
  Matrix<float> q, k, v;
  std::vector<E> k_store, v_store;  // K/V in the storage type, [Tk, heads * dim]
  std::vector<float> slopes, sinks;
  std::vector<std::uint8_t> valid;
};

template <class E>
Inputs<E> make_inputs(const Case& c, std::mt19937& g) {
  Inputs<E> in;
  in.q = eftest::random_matrix<float>(c.tq, c.heads * c.d, g);
  in.k = eftest::random_matrix<float>(c.tk, c.kv_heads * c.d, g);
  in.v = eftest::random_matrix<float>(c.tk, c.kv_heads * c.dv, g);
  // Round K/V through the storage type so the reference sees exactly what the kernel reads.
  for (auto* m : {&in.k, &in.v}) {
    std::vector<E>& store = m == &in.k ? in.k_store : in.v_store;
    store.resize(static_cast<std::size_t>(m->size()));
    for (Index i = 0; i < m->size(); ++i) {
      store[static_cast<std::size_t>(i)] = from_float<E>(m->data()[i]);
      m->data()[i] = to_float(store[static_cast<std::size_t>(i)]);
    }
  }
  for (Index h = 0; h < c.heads; ++h) {
    in.slopes.push_back(std::exp2(-8.0f * float(h + 1) / float(c.heads)));
    in.sinks.push_back(0.7f * float(h) - 1.0f);
  }
  in.valid.assign(static_cast<std::size_t>(c.tk), 1);
  if (c.padding)
    for (Index j = 0; j < c.tk; j += 3) in.valid[static_cast<std::size_t>(j)] = 0;  // every third key
  return in;
}

template <class E>
void run_case(const Case& c, std::mt19937& g, double tol) {
  SCOPED_TRACE(name(c));
  Inputs<E> in = make_inputs<E>(c, g);
  const std::int64_t q_pos0 = c.tk - c.tq;
  AttentionDims dims{c.heads, c.kv_heads, c.d, c.dv, 1.0f / std::sqrt(float(c.d))};
  AttentionMask mask;
  mask.causal = c.causal;
  mask.sliding_window = c.window;
  mask.softcap = c.softcap;
  if (c.alibi) mask.alibi_slopes = in.slopes.data();
  if (c.sinks) mask.sinks = in.sinks.data();
  if (c.padding) {
    mask.key_valid = in.valid.data();
    mask.key_valid_len = c.tk;
  }
  // Keys split into spans at arbitrary boundaries (positions stay consecutive across them).
  std::vector<KVSpan<E>> spans;
  const Index per = (c.tk + c.spans - 1) / c.spans;
  for (Index j0 = 0; j0 < c.tk; j0 += per) {
    KVSpan<E> s;
    s.k = in.k_store.data() + j0 * c.kv_heads * c.d;
    s.v = in.v_store.data() + j0 * c.kv_heads * c.dv;
    s.k_ld = c.kv_heads * c.d;
    s.v_ld = c.kv_heads * c.dv;
    s.k_head_stride = c.d;
    s.v_head_stride = c.dv;
    s.tokens = std::min(per, c.tk - j0);
    s.pos0 = j0;
    spans.push_back(s);
  }
  Matrix<float> out = Matrix<float>::Constant(c.tq, c.heads * c.dv, 99.0f);
  Matrix<float> lse(c.tq, c.heads);
  AttentionIO io{in.q.data(), in.q.cols(), c.tq, q_pos0, out.data(), out.cols(), lse.data(), lse.cols()};
  Workspace<float> ws;
  flash_attention(dims, io, spans.data(), spans.size(), mask, ws);

  RefAttentionOptions opts;
  opts.scale = dims.scale;
  opts.causal = c.causal;
  opts.sliding_window = c.window;
  opts.softcap = c.softcap;
  if (c.alibi) opts.alibi_slopes.assign(in.slopes.begin(), in.slopes.end());
  if (c.sinks) opts.sinks.assign(in.sinks.begin(), in.sinks.end());
  if (c.padding) opts.key_valid.assign(in.valid.begin(), in.valid.end());
  RefMatrix ref_lse;
  const RefMatrix ref = eftest::reference_attention(in.q.template cast<double>(), in.k.template cast<double>(), in.v.template cast<double>(),
                                                    eftest::iota_positions(c.tq, q_pos0), eftest::iota_positions(c.tk),
                                                    c.heads, c.kv_heads, opts, &ref_lse);
  for (Index i = 0; i < out.rows(); ++i)
    for (Index j = 0; j < out.cols(); ++j) ASSERT_NEAR(out(i, j), ref(i, j), tol) << "row " << i << " col " << j;
  for (Index i = 0; i < lse.rows(); ++i)
    for (Index h = 0; h < lse.cols(); ++h) {
      if (std::isinf(ref_lse(i, h))) {
        ASSERT_EQ(lse(i, h), -INFINITY) << "row " << i << " head " << h;
      } else {
        ASSERT_NEAR(lse(i, h), ref_lse(i, h), tol * (1 + std::fabs(ref_lse(i, h))));
      }
    }
}

// Outputs are convex combinations of N(0, 1) values: a float kernel gets them to ~1e-6; 3e-5
// covers the logit rounding (d terms) amplified by softmax for the largest tested d and T.
constexpr double kTol = 3e-5;

TEST(FlashAttention, PrefillAndDecodeMatchReference) {
  auto g = eftest::rng(700);
  std::vector<Case> cases;
  for (Index d : {32, 64, 80, 128})
    for (Index kv : {1, 2, 4})
      for (Index t : {1, 7, 33, 130}) {
        Case c{4, kv, d, d, t, t};
        cases.push_back(c);
      }
  // decode: few queries against longer caches, including chunked decode (>= 2048 keys)
  cases.push_back(Case{8, 2, 64, 64, 1, 300});
  cases.push_back(Case{8, 2, 64, 64, 3, 2500});
  cases.push_back(Case{4, 1, 32, 32, 2, 4100});
  cases.push_back(Case{4, 4, 16, 16, 1, 2049});
  // value head dim different from query head dim (as MLA)
  cases.push_back(Case{4, 2, 48, 24, 20, 50});
  for (const Case& c : cases) run_case<float>(c, g, kTol);
}

TEST(FlashAttention, EveryMaskAndBiasOption) {
  auto g = eftest::rng(701);
  std::vector<Case> cases;
  for (bool causal : {true, false})
    for (Index window : {0, 1, 5, 64})
      for (bool pad : {false, true}) {
        if (!causal && window) continue;  // the standard policy's window is causal
        Case c{4, 2, 32, 32, 70, 90};
        c.causal = causal;
        c.window = window;
        c.padding = pad;
        cases.push_back(c);
      }
  Case cap{4, 2, 32, 32, 40, 40};
  cap.softcap = 3.0f;  // small cap: most logits are bent
  cases.push_back(cap);
  Case alibi{6, 6, 16, 16, 50, 80};
  alibi.alibi = true;
  cases.push_back(alibi);
  Case sinks{4, 2, 32, 32, 17, 17};
  sinks.sinks = true;
  cases.push_back(sinks);
  Case all{4, 1, 64, 64, 100, 130};
  all.window = 33;
  all.softcap = 20.0f;
  all.alibi = all.sinks = all.padding = true;
  all.spans = 3;
  cases.push_back(all);
  Case decode_all{8, 2, 64, 64, 1, 3000};
  decode_all.window = 1500;
  decode_all.sinks = decode_all.alibi = true;
  decode_all.spans = 2;
  cases.push_back(decode_all);
  for (const Case& c : cases) run_case<float>(c, g, kTol);
}

TEST(FlashAttention, SpansAtArbitraryBoundaries) {
  auto g = eftest::rng(702);
  for (int spans : {2, 3, 7}) {
    run_case<float>(Case{4, 2, 32, 32, 40, 200, true, 0, 0.0f, false, false, false, spans}, g, kTol);
    run_case<float>(Case{4, 2, 32, 32, 1, 2600, true, 0, 0.0f, false, false, false, spans}, g, kTol);
  }
}

// Decode items with >= kDecodeWideRows rows (query heads x queries per kv head, as MLA's absorbed
// path with 16+ heads on one latent kv head) take the wide route: S^T with the keys as rows, P V a
// tile at a time. Row counts 16, 17 (tails), 32 and 2 x 16; head dims up to 576; masks; spans; every
// storage type.
TEST(FlashAttention, WideGroupDecodeMatchesReference) {
  auto g = eftest::rng(706);
  // d = 200 and 576 (MLA's absorbed key: 512 + 64) cross the 128-dim depth slices of S^T.
  std::vector<Case> cases = {Case{16, 1, 72, 40, 1, 2100}, Case{17, 1, 24, 56, 1, 130}, Case{16, 1, 33, 33, 2, 300},
                             Case{32, 2, 64, 64, 1, 2200}, Case{16, 1, 200, 24, 1, 150}, Case{16, 1, 576, 512, 1, 70}};
  Case masked{16, 1, 32, 32, 3, 200};
  masked.window = 70;
  masked.sinks = masked.alibi = masked.padding = true;
  masked.softcap = 10.0f;
  masked.spans = 3;
  cases.push_back(masked);
  for (const Case& c : cases) {
    run_case<float>(c, g, kTol);
    run_case<f16>(c, g, kTol);
    run_case<bf16>(c, g, kTol);
  }
}

TEST(FlashAttention, HalfAndBf16KeysAndValues) {
  auto g = eftest::rng(703);
  for (Case c : {Case{4, 2, 64, 64, 50, 50}, Case{8, 2, 128, 128, 1, 2300}, Case{4, 4, 40, 40, 17, 17}}) {
    run_case<f16>(c, g, kTol);
    run_case<bf16>(c, g, kTol);
  }
}

TEST(FlashAttention, FullyMaskedRowsGiveZeroNotNaN) {
  auto g = eftest::rng(704);
  // Every key padded out: every row fully masked. With sinks: 0 output, lse = sink.
  for (Index tq : {1, 40}) {
    Case c{4, 2, 32, 32, tq, 40};
    Inputs<float> in = make_inputs<float>(c, g);
    std::vector<std::uint8_t> none(40, 0);
    AttentionMask mask;
    mask.key_valid = none.data();
    mask.key_valid_len = 40;
    KVSpan<float> s{in.k_store.data(), in.v_store.data(), 64, 64, 32, 32, 40, 0};
    Matrix<float> out = Matrix<float>::Constant(tq, 128, 5.0f), lse(tq, 4);
    AttentionIO io{in.q.data(), 128, tq, 40 - tq, out.data(), 128, lse.data(), 4};
    Workspace<float> ws;
    flash_attention(AttentionDims{4, 2, 32, 32, 0.2f}, io, &s, 1, mask, ws);
    EXPECT_TRUE(out.isZero()) << out.cwiseAbs().maxCoeff();
    EXPECT_TRUE((lse.array() == -INFINITY).all());
    mask.sinks = in.sinks.data();
    flash_attention(AttentionDims{4, 2, 32, 32, 0.2f}, io, &s, 1, mask, ws);
    EXPECT_TRUE(out.isZero());
    for (Index h = 0; h < 4; ++h) EXPECT_EQ(lse(0, h), in.sinks[static_cast<std::size_t>(h)]);
  }
  // No keys at all.
  Matrix<float> q = Matrix<float>::Ones(3, 64), out = Matrix<float>::Constant(3, 64, 1.0f);
  AttentionIO io{q.data(), 64, 3, 0, out.data(), 64, nullptr, 0};
  Workspace<float> ws;
  flash_attention<float>(AttentionDims{2, 2, 32, 32, 0.2f}, io, nullptr, 0, AttentionMask{}, ws);
  EXPECT_TRUE(out.isZero());
}

TEST(FlashAttention, NaNInAMaskedKeyDoesNotReachTheOutput) {
  auto g = eftest::rng(705);
  // {heads, kv heads, queries}: the decode path, the packed prefill path, and the wide decode route
  // (16 heads on one kv head: 32 rows, transposed accumulator).
  for (auto [H, Hkv, T] : {std::array<Index, 3>{2, 2, 8}, {2, 2, 40}, {16, 1, 2}}) {
    Case c{H, Hkv, 16, 16, T, T};
    Inputs<float> in = make_inputs<float>(c, g);
    // The last key/value is in the future of every query but the last one; poison it.
    for (Index i = 0; i < Hkv * 16; ++i) {
      in.v_store[static_cast<std::size_t>((T - 1) * Hkv * 16 + i)] = NAN;
      in.k_store[static_cast<std::size_t>((T - 1) * Hkv * 16 + i)] = NAN;
    }
    KVSpan<float> s{in.k_store.data(), in.v_store.data(), Hkv * 16, Hkv * 16, 16, 16, T, 0};
    Matrix<float> out(T, H * 16);
    AttentionIO io{in.q.data(), H * 16, T, 0, out.data(), H * 16, nullptr, 0};
    Workspace<float> ws;
    flash_attention(AttentionDims{H, Hkv, 16, 16, 0.25f}, io, &s, 1, AttentionMask{}, ws);
    EXPECT_FALSE(out.topRows(T - 1).array().isNaN().any()) << "H=" << H << " T=" << T;
    EXPECT_TRUE(out.row(T - 1).array().isNaN().all());  // the last query does see the NaN key
  }
}

TEST(FlashAttention, BitIdenticalAcrossThreadCounts) {
  auto g = eftest::rng(706);
  const int saved = num_threads();
  for (Case c : {Case{8, 2, 64, 64, 200, 200}, Case{8, 2, 64, 64, 1, 5000}}) {
    Inputs<float> in = make_inputs<float>(c, g);
    KVSpan<float> s{in.k_store.data(), in.v_store.data(), c.kv_heads * c.d, c.kv_heads * c.dv, c.d, c.dv, c.tk, 0};
    Matrix<float> o1(c.tq, c.heads * c.dv), o2(c.tq, c.heads * c.dv);
    Workspace<float> ws;
    AttentionDims dims{c.heads, c.kv_heads, c.d, c.dv, 0.125f};
    set_num_threads(1);
    AttentionIO io1{in.q.data(), in.q.cols(), c.tq, c.tk - c.tq, o1.data(), o1.cols(), nullptr, 0};
    flash_attention(dims, io1, &s, 1, AttentionMask{}, ws);
    set_num_threads(2);
    AttentionIO io2{in.q.data(), in.q.cols(), c.tq, c.tk - c.tq, o2.data(), o2.cols(), nullptr, 0};
    flash_attention(dims, io2, &s, 1, AttentionMask{}, ws);
    EXPECT_EQ(o1, o2) << name(c);
  }
  set_num_threads(saved);
}

TEST(FlashAttention, WorkspaceMemoryIsLinearInSequenceLength) {
  // Scratch is O(T * head_dim) (packed K/V plus per-thread tiles), never O(T^2).
  std::size_t prev = 0;
  for (Index T : {256, 512, 1024}) {
    Matrix<float> q = Matrix<float>::Zero(T, 64), k = Matrix<float>::Zero(T, 64), out(T, 64);
    KVSpan<float> s{k.data(), k.data(), 64, 64, 64, 64, T, 0};
    AttentionIO io{q.data(), 64, T, 0, out.data(), 64, nullptr, 0};
    Workspace<float> ws;
    flash_attention(AttentionDims{1, 1, 64, 64, 0.125f}, io, &s, 1, AttentionMask{}, ws);
    if (prev) {
      EXPECT_LT(ws.high_water(), prev * 2 + 64 * 1024) << "T=" << T;  // at most ~doubles
    }
    EXPECT_LT(ws.high_water(), std::size_t(4 * T * 64 + 256 * 1024));
    prev = ws.high_water();
  }
}

TEST(FlashAttention, ArgumentErrors) {
  Matrix<float> q(2, 64), out(2, 64);
  Workspace<float> ws;
  AttentionIO io{q.data(), 64, 2, 0, out.data(), 64, nullptr, 0};
  EXPECT_THROW(flash_attention<float>(AttentionDims{3, 2, 16, 16, 1.0f}, io, nullptr, 0, AttentionMask{}, ws), Error);
  EXPECT_THROW(flash_attention<float>(AttentionDims{4, 2, 0, 16, 1.0f}, io, nullptr, 0, AttentionMask{}, ws), Error);
  AttentionIO narrow{q.data(), 32, 2, 0, out.data(), 64, nullptr, 0};
  EXPECT_THROW(flash_attention<float>(AttentionDims{4, 2, 16, 16, 1.0f}, narrow, nullptr, 0, AttentionMask{}, ws), Error);
  KVSpan<float> broken{nullptr, nullptr, 32, 32, 16, 16, 5, 0};
  try {
    flash_attention<float>(AttentionDims{4, 2, 16, 16, 1.0f}, io, &broken, 1, AttentionMask{}, ws, "MyAttention");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("MyAttention"), std::string::npos);
  }
}

}  // namespace

namespace {

// An arbitrary block-sparse mask (random empty/full/partial blocks, a partial-block element rule
// that depends on the head) over a causal base policy, against the reference with the same mask
// as an `allow` callback; and the skipped work is visible in the LSE of fully empty query blocks.
TEST(FlashAttention, ArbitraryBlockMask) {
  auto g = eftest::rng(707);
  const Index H = 4, Hkv = 2, d = 32, T = 150, B = 16;
  const Index nb = (T + B - 1) / B;
  std::vector<TileKind> kinds(static_cast<std::size_t>(nb * nb));
  std::uniform_int_distribution<int> pick(0, 2);
  for (auto& k : kinds) k = static_cast<TileKind>(pick(g));
  for (Index kb = 0; kb < nb; ++kb) kinds[static_cast<std::size_t>(kb)] = TileKind::empty;  // query block 0 sees nothing
  auto element = [](Index head, std::int64_t q, std::int64_t k) { return (q + k + head) % 3 != 0; };
  using Policy = BlockMaskPolicy<AttentionMask, decltype(element)>;
  Policy policy{AttentionMask{}, B, B, nb, nb, kinds.data(), element};
  Matrix<float> q = eftest::random_matrix<float>(T, H * d, g), k = eftest::random_matrix<float>(T, Hkv * d, g),
                v = eftest::random_matrix<float>(T, Hkv * d, g), out(T, H * d), lse(T, H);
  for (Index T_q : {T, Index(1)}) {  // prefill, and the last query alone (decode path)
    const Index first = T - T_q;
    KVSpan<float> span{k.data(), v.data(), Hkv * d, Hkv * d, d, d, T, 0};
    AttentionIO io{q.data() + first * H * d, H * d, T_q, first, out.data(), H * d, lse.data(), H};
    Workspace<float> ws;
    flash_attention(AttentionDims{H, Hkv, d, d, 0.2f}, io, &span, 1, policy, ws);
    eftest::RefAttentionOptions o;
    o.scale = 0.2;
    o.allow = [&](long head, long i, long j) {
      const std::int64_t qp = first + i;
      const TileKind b = kinds[static_cast<std::size_t>((qp / B) * nb + j / B)];
      return b == TileKind::full || (b == TileKind::partial && element(head, qp, j));
    };
    RefMatrix ref_lse;
    const RefMatrix ref = eftest::reference_attention(q.middleRows(first, T_q).cast<double>(), k.cast<double>(),
                                                      v.cast<double>(), eftest::iota_positions(T_q, first),
                                                      eftest::iota_positions(T), H, Hkv, o, &ref_lse);
    EXPECT_LT((out.topRows(T_q).cast<double>() - ref).cwiseAbs().maxCoeff(), kTol) << "T_q=" << T_q;
    if (T_q == T) {
      for (Index i = 0; i < B; ++i) EXPECT_EQ(lse(i, 0), -INFINITY);  // the empty query block
    }
  }
}

}  // namespace
