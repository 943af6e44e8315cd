// Sparse attention patterns (ops/sparse_patterns.hpp) through the one flash kernel against the double
// reference attention with the equivalent explicit dense mask; prefill and decode; tiles the kernel
// computes against the tiles the pattern attends (counted); configuration errors.
#include <eigenformer/ops/attention.hpp>
#include <eigenformer/ops/sparse_patterns.hpp>

#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "reference_attention.hpp"
#include "test_util.hpp"

using namespace eigenformer;
using eftest::RefAttentionOptions;
using eftest::RefMatrix;

namespace {

struct Shape {
  Index heads = 4, kv_heads = 2, d = 32;
  Index tq = 0, tk = 0;  // queries are the last tq of tk positions
  int spans = 1;
};

// Run `policy` through flash_attention and compare with the reference whose mask is
// policy.visible(h, q_pos, k_pos) for every pair.
template <class Policy>
void check_against_reference(const Policy& policy, const Shape& s, std::mt19937& g, const std::string& what) {
  SCOPED_TRACE(what + " H" + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) + " Tq" +
               std::to_string(s.tq) + " Tk" + std::to_string(s.tk) + " spans" + std::to_string(s.spans));
  const Matrix<float> q = eftest::random_matrix<float>(s.tq, s.heads * s.d, g);
  const Matrix<float> k = eftest::random_matrix<float>(s.tk, s.kv_heads * s.d, g);
  const Matrix<float> v = eftest::random_matrix<float>(s.tk, s.kv_heads * s.d, g);
  const std::int64_t q_pos0 = s.tk - s.tq;
  AttentionDims dims{s.heads, s.kv_heads, s.d, s.d, 1.0f / std::sqrt(float(s.d))};
  std::vector<KVSpan<float>> spans;
  const Index per = (s.tk + s.spans - 1) / s.spans;
  for (Index j0 = 0; j0 < s.tk; j0 += per) {
    KVSpan<float> sp{k.data() + j0 * k.cols(), v.data() + j0 * v.cols(), k.cols(), v.cols(), s.d, s.d,
                     std::min(per, s.tk - j0), j0};
    spans.push_back(sp);
  }
  Matrix<float> out = Matrix<float>::Constant(s.tq, s.heads * s.d, 99.0f), lse(s.tq, s.heads);
  AttentionIO io{q.data(), q.cols(), s.tq, q_pos0, out.data(), out.cols(), lse.data(), lse.cols()};
  Workspace<float> ws;
  flash_attention(dims, io, spans.data(), spans.size(), policy, ws);

  RefAttentionOptions opts;
  opts.scale = dims.scale;
  opts.causal = false;
  opts.allow = [&](long h, long i, long j) { return policy.visible(h, q_pos0 + i, j); };
  RefMatrix ref_lse;
  const RefMatrix ref = eftest::reference_attention(q.cast<double>(), k.cast<double>(), v.cast<double>(),
                                                    eftest::iota_positions(s.tq, q_pos0), eftest::iota_positions(s.tk),
                                                    s.heads, s.kv_heads, opts, &ref_lse);
  for (Index i = 0; i < out.rows(); ++i)
    for (Index j = 0; j < out.cols(); ++j) ASSERT_NEAR(out(i, j), ref(i, j), 3e-5) << "row " << i << " col " << j;
  for (Index i = 0; i < lse.rows(); ++i)
    for (Index h = 0; h < lse.cols(); ++h) {
      if (std::isinf(ref_lse(i, h)))
        ASSERT_EQ(lse(i, h), -INFINITY) << "row " << i << " head " << h;
      else
        ASSERT_NEAR(lse(i, h), ref_lse(i, h), 3e-5 * (1 + std::fabs(ref_lse(i, h))));
    }
}

// Prefill (several lengths, spans) and, for causal patterns, decode of 1 and 3 queries.
template <class Policy>
void check_prefill_and_decode(const Policy& p, bool decode, std::mt19937& g, const std::string& what, Index heads = 4,
                              Index kv_heads = 2) {
  // 150 already crosses the 64-key tiles and the query tiles; 301 adds a third key tile.
  const std::vector<Index> lengths = eftest::kSlowBuild ? std::vector<Index>{1, 37, 150} : std::vector<Index>{1, 37, 150, 301};
  for (Index T : lengths) check_against_reference(p, Shape{heads, kv_heads, 32, T, T, 1}, g, what);
  check_against_reference(p, Shape{heads, kv_heads, 16, 200, 200, 3}, g, what);
  if (!decode) return;
  for (Index tq : {1, 3}) {
    check_against_reference(p, Shape{heads, kv_heads, 32, tq, 333, 1}, g, what + " decode");
    check_against_reference(p, Shape{heads, kv_heads, 16, tq, 2500, 2}, g, what + " decode chunked");
  }
}

TEST(SparsePatterns, LocalMatchesDenseMask) {
  auto g = eftest::rng(900);
  for (Index w : {1, 5, 64, 100}) check_prefill_and_decode(LocalPattern::causal(w), true, g, "local causal");
  for (Index w : {0, 3, 40}) check_prefill_and_decode(LocalPattern::symmetric(w), false, g, "local symmetric");
  // Causal local == AttentionMask's sliding window (same W keys).
  LocalPattern p = LocalPattern::causal(7);
  AttentionMask m;
  m.sliding_window = 7;
  for (std::int64_t q = 0; q < 40; ++q)
    for (std::int64_t k = 0; k < 40; ++k) ASSERT_EQ(p.visible(0, q, k), m.visible(0, q, k));
}

TEST(SparsePatterns, AtrousMatchesDenseMask) {
  auto g = eftest::rng(901);
  check_prefill_and_decode(AtrousPattern(3, -1, 0), true, g, "atrous r3 unbounded causal");
  check_prefill_and_decode(AtrousPattern(4, 10, 0), true, g, "atrous r4 10 back");
  check_prefill_and_decode(AtrousPattern(2, 8, 8), false, g, "atrous r2 8 each side");
  check_prefill_and_decode(AtrousPattern(1, 5, 0), true, g, "atrous r1 == local");
}

TEST(SparsePatterns, SparseTransformerStridedMatchesDenseMask) {
  auto g = eftest::rng(902);
  using M = SparseTransformerPattern::Mode;
  for (M m : {M::local, M::strided, M::both, M::alternate})
    for (Index l : {8, 32}) check_prefill_and_decode(SparseTransformerPattern(m, l), true, g, "sparse transformer");
  // attention.py get_attn_mask('strided', l): q >= k and (q - k) mod l == 0; ('local', l): band of l.
  SparseTransformerPattern st(M::strided, 4), lo(M::local, 4);
  for (std::int64_t q = 0; q < 20; ++q)
    for (std::int64_t k = 0; k < 20; ++k) {
      ASSERT_EQ(st.visible(0, q, k), q >= k && (q - k) % 4 == 0);
      ASSERT_EQ(lo.visible(0, q, k), q >= k && q - k <= 3);
    }
}

TEST(SparsePatterns, FixedMatchesAttentionPyLayout) {
  auto g = eftest::rng(903);
  // The block layout of attention.py get_blocksparse_obj('fixed'), transcribed, for n_bctx = 16.
  const Index blk = 8, lctx = 32, nb = 16;
  for (Index num_verts : {1, 2, 4})
    for (Index vertsize : {1, 2}) {
      if (num_verts * vertsize > lctx / blk) continue;
      FixedPattern f(blk, lctx, num_verts, vertsize);
      const Index stride = lctx / blk;
      std::vector<Index> indices;
      for (Index i = stride - 1; i >= 0; --i) indices.push_back(i);
      for (Index h = 0; h < 4; ++h) {
        std::vector<std::vector<bool>> layout(nb, std::vector<bool>(nb, false));
        const Index v = h % num_verts;
        for (Index t = 0; t < vertsize; ++t) {
          const Index idx = indices[static_cast<std::size_t>(v * vertsize + t)];
          for (Index c = idx; c < nb; c += stride) for (auto& row : layout) row[static_cast<std::size_t>(c)] = true;
        }
        for (Index qb = 0; qb < nb; ++qb) {
          const Index row = qb / stride;
          for (Index c = row * stride; c < (row + 1) * stride; ++c) layout[qb][c] = true;
          for (Index c = qb + 1; c < nb; ++c) layout[qb][c] = false;
        }
        for (std::int64_t q = 0; q < nb * blk; ++q)
          for (std::int64_t k = 0; k < nb * blk; ++k) {
            const bool want = layout[q / blk][k / blk] && (q / blk != k / blk || k <= q);
            ASSERT_EQ(f.visible(h, q, k), want) << "head " << h << " q " << q << " k " << k;
          }
      }
      check_prefill_and_decode(f, true, g, "fixed nv" + std::to_string(num_verts) + " vs" + std::to_string(vertsize));
    }
  EXPECT_THROW(FixedPattern(8, 30, 1, 1), Error);   // local_attn_ctx not a multiple of the block
  EXPECT_THROW(FixedPattern(8, 32, 1, 3), Error);   // vertsize does not divide stride 4
  EXPECT_THROW(FixedPattern(8, 32, 3, 2), Error);   // 3 sets of 2 > 4 blocks
  EXPECT_THROW(FixedPattern(8, 32, 2, 1).check_heads(3), Error);
}

TEST(SparsePatterns, LongformerMatchesDenseMask) {
  auto g = eftest::rng(904);
  for (Index w : {2, 8, 64})
    for (Index dil : {1, 3}) {
      std::vector<std::uint8_t> global(400, 0);
      global[0] = global[5] = global[130] = 1;
      check_prefill_and_decode(LongformerPattern(w, dil, global), false, g, "longformer w" + std::to_string(w));
      check_prefill_and_decode(LongformerPattern(w, dil, {}), false, g, "longformer no global");
    }
  // HF: one_sided = attention_window / 2 keys on each side.
  LongformerPattern p(6, 1, {});
  EXPECT_TRUE(p.visible(0, 10, 7));
  EXPECT_FALSE(p.visible(0, 10, 6));
  EXPECT_TRUE(p.visible(0, 10, 13));
  EXPECT_FALSE(p.visible(0, 10, 14));
  try {
    LongformerPattern bad(5, 1, {});
    FAIL() << "odd window accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("attention_window = 5"), std::string::npos) << e.what();
  }
}

TEST(SparsePatterns, SegmentMatchesDenseMask) {
  auto g = eftest::rng(905);
  for (Index seg : {1, 16, 100}) {
    SegmentPattern p;
    p.segment = seg;
    p.causal = true;
    check_prefill_and_decode(p, true, g, "segment causal");
    p.causal = false;
    check_prefill_and_decode(p, false, g, "segment bidirectional");
  }
}

TEST(SparsePatterns, LocalBlockAndCompressedMemoryMatchDenseMask) {
  auto g = eftest::rng(909);
  for (Index b : {1, 16, 64, 100}) check_prefill_and_decode(LocalBlockPattern(b), true, g, "local block");
  LocalBlockPattern lb(4);  // t2t: block [4, 8) sees [0, 8) up to itself
  EXPECT_TRUE(lb.visible(0, 5, 0));
  EXPECT_TRUE(lb.visible(0, 5, 5));
  EXPECT_FALSE(lb.visible(0, 5, 6));
  EXPECT_FALSE(lb.visible(0, 8, 3));
  EXPECT_THROW(LocalBlockPattern(0), Error);
  // Compressed memory: keys are memory indices (fewer than queries).
  for (std::int64_t f : {1, 3, 7}) {
    CompressedMemoryPattern p;
    p.factor = f;
    for (Index T : {1, 40, 200}) {
      const Index M = 1 + T / f;
      // queries at positions 0..T-1, keys at memory indices 0..M-1
      const Matrix<float> q = eftest::random_matrix<float>(T, 64, g), k = eftest::random_matrix<float>(M, 32, g),
                          v = eftest::random_matrix<float>(M, 32, g);
      Matrix<float> out(T, 64);
      KVSpan<float> sp{k.data(), v.data(), 32, 32, 16, 16, M, 0};
      AttentionIO io{q.data(), 64, T, 0, out.data(), 64, nullptr, 0};
      Workspace<float> ws;
      flash_attention(AttentionDims{4, 2, 16, 16, 0.25f}, io, &sp, 1, p, ws);
      RefAttentionOptions o;
      o.scale = 0.25;
      o.causal = false;
      o.allow = [&](long, long i, long j) { return p.visible(0, i, j); };
      const RefMatrix ref = eftest::reference_attention(q.cast<double>(), k.cast<double>(), v.cast<double>(),
                                                        eftest::iota_positions(T), eftest::iota_positions(M), 4, 2, o);
      for (Index i = 0; i < T; ++i)
        for (Index j = 0; j < 64; ++j) ASSERT_NEAR(out(i, j), ref(i, j), 3e-5) << "f " << f << " T " << T;
    }
  }
}

TEST(SparsePatterns, BigBirdLayoutMatchesDenseMask) {
  auto g = eftest::rng(906);
  BigBirdConfig c{16, 2, 7};
  const Index T = 320, nb = 20;  // > (5 + 2 r) * block = 144: block-sparse
  ASSERT_FALSE(bigbird_full_attention(T, c));
  const BlockLayout layout = bigbird_layout(T, 4, c);
  const std::vector<std::int64_t> rnd = bigbird_random_blocks(T, 4, c);
  // Independent dense construction of the HF ITC layout.
  for (Index h = 0; h < 4; ++h)
    for (Index qb = 0; qb < nb; ++qb)
      for (Index kb = 0; kb < nb; ++kb) {
        bool on = qb == 0 || qb == nb - 1 || kb == 0 || kb == nb - 1 || (kb >= qb - 1 && kb <= qb + 1);
        if (qb >= 1 && qb <= nb - 2)
          for (Index t = 0; t < 2; ++t) on |= rnd[static_cast<std::size_t>((h * (nb - 2) + qb - 1) * 2 + t)] == kb;
        ASSERT_EQ(layout.kind(h, qb, kb) != TileKind::empty, on) << h << " " << qb << " " << kb;
      }
  // Random blocks: distinct, in the middle, outside the window; reproducible; differ by seed and head.
  for (Index h = 0; h < 4; ++h)
    for (Index i = 1; i <= nb - 2; ++i) {
      const auto a = rnd[static_cast<std::size_t>((h * (nb - 2) + i - 1) * 2)];
      const auto b = rnd[static_cast<std::size_t>((h * (nb - 2) + i - 1) * 2 + 1)];
      EXPECT_NE(a, b);
      for (auto x : {a, b}) {
        EXPECT_GE(x, 1);
        EXPECT_LE(x, nb - 2);
        EXPECT_TRUE(x < i - 1 || x > i + 1);
      }
    }
  EXPECT_EQ(rnd, bigbird_random_blocks(T, 4, c));
  EXPECT_NE(rnd, bigbird_random_blocks(T, 4, BigBirdConfig{16, 2, 8}));
  BlockSparsePolicy<> policy(layout);
  for (Index tq : {T}) check_against_reference(policy, Shape{4, 2, 32, tq, T, 1}, g, "bigbird");
  check_against_reference(policy, Shape{4, 4, 16, T, T, 3}, g, "bigbird spans");
  // Short input: full attention.
  const BlockLayout full = bigbird_layout(64, 4, c);
  BlockSparsePolicy<> fp(full);
  for (std::int64_t q = 0; q < 64; ++q)
    for (std::int64_t k = 0; k < 64; ++k) ASSERT_TRUE(fp.visible(1, q, k));
  check_against_reference(fp, Shape{4, 2, 32, 64, 64, 1}, g, "bigbird full fallback");
  EXPECT_THROW(bigbird_layout(330, 4, c), Error);  // not a multiple of the block
}

TEST(SparsePatterns, UserBlockLayout) {
  auto g = eftest::rng(907);
  // A user layout per head with full and partial blocks, the partial ones with an element mask.
  const Index blk = 16, nb = 12;
  std::vector<TileKind> dense(static_cast<std::size_t>(2 * nb * nb), TileKind::empty);
  std::mt19937 lg(3);
  for (auto& t : dense) {
    const unsigned x = lg() % 4;
    t = x == 0 ? TileKind::full : x == 1 ? TileKind::partial : TileKind::empty;
  }
  const BlockLayout layout = BlockLayout::from_dense(blk, nb, nb, 2, dense.data());
  auto elem = [](Index h, std::int64_t q, std::int64_t k) { return (q + k + h) % 3 != 0; };
  BlockSparsePolicy<decltype(elem)> p(layout, false, elem);
  for (Index h = 0; h < 2; ++h)
    for (std::int64_t q = 0; q < nb * blk; ++q)
      for (std::int64_t k = 0; k < nb * blk; ++k) {
        const TileKind t = dense[static_cast<std::size_t>((h * nb + q / blk) * nb + k / blk)];
        ASSERT_EQ(p.visible(h, q, k), t == TileKind::full || (t == TileKind::partial && elem(h, q, k)));
      }
  check_against_reference(p, Shape{2, 1, 32, nb * blk, nb * blk, 1}, g, "user layout");
  check_against_reference(p, Shape{2, 2, 16, 150, nb * blk, 2}, g, "user layout, queries at the end");
  BlockSparsePolicy<decltype(elem)> pc(layout, true, elem);
  check_against_reference(pc, Shape{2, 1, 32, nb * blk, nb * blk, 1}, g, "user layout causal");
  check_against_reference(pc, Shape{2, 1, 32, 1, nb * blk, 1}, g, "user layout causal decode");
  // Shared layout built with add().
  BlockLayout shared(blk, nb, nb);
  shared.add(0, 3, 1);
  shared.add(0, 3, 1, TileKind::partial);  // added twice: stays full
  shared.add(0, 5, 9, TileKind::partial);
  shared.finalize();
  EXPECT_EQ(shared.nnz(), 2u);
  EXPECT_EQ(shared.kind(1, 3, 1), TileKind::full);
  EXPECT_EQ(shared.kind(0, 5, 9), TileKind::partial);
  EXPECT_EQ(shared.kind(0, 5, 8), TileKind::empty);
  EXPECT_THROW(shared.add(0, 1, 1), Error);
  BlockLayout l2(blk, nb, nb);
  EXPECT_THROW(l2.add(0, nb, 0), Error);
  EXPECT_THROW(BlockSparsePolicy<>{l2}, Error);  // not finalized
}

// Records every (kv head, query tile, key tile) the kernel computes (row() is called only for the
// rows of computed tiles).
template <class Inner>
struct CountingPolicy {
  const Inner* inner;
  std::int64_t q_pos0;
  Index bq, G;
  mutable std::mutex* mu;
  mutable std::set<std::tuple<Index, std::int64_t, std::int64_t>>* seen;

  void init(Index h, float& m, float& l) const { inner->init(h, m, l); }
  Index query_tile() const {
    if constexpr (attention_detail::has_query_tile<Inner>::value) return inner->query_tile();
    return 0;
  }
  TileKind tile(Index h, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    return inner->tile(h, q0, q1, k0, k1);
  }
  std::int64_t next_key(Index h, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    return inner->next_key(h, q0, q1, k);
  }
  bool visible(Index h, std::int64_t q, std::int64_t k) const { return inner->visible(h, q, k); }
  void row(Index h, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    {
      std::lock_guard<std::mutex> lock(*mu);
      seen->insert({h / G, (q - q_pos0) / bq * bq, k0});
    }
    inner->row(h, q, k0, s, n, partial);
  }
};

// The kernel's tiling: query tiles of bq rows (72 / G, or aligned to the policy's query_tile), key
// tiles of 64 from position 0 (one span).
template <class Policy>
void check_tiles(const Policy& p, Index H, Index Hkv, Index T, bool exact, const std::string& what) {
  SCOPED_TRACE(what + " T" + std::to_string(T));
  const Index G = H / Hkv, bq = attention_detail::query_rows(p, G, T), d = 16;
  auto g = eftest::rng(908);
  const Matrix<float> q = eftest::random_matrix<float>(T, H * d, g), k = eftest::random_matrix<float>(T, Hkv * d, g);
  Matrix<float> out(T, H * d);
  std::mutex mu;
  std::set<std::tuple<Index, std::int64_t, std::int64_t>> seen;
  CountingPolicy<Policy> cp{&p, 0, bq, G, &mu, &seen};
  KVSpan<float> sp{k.data(), k.data(), Hkv * d, Hkv * d, d, d, T, 0};
  AttentionIO io{q.data(), H * d, T, 0, out.data(), H * d, nullptr, 0};
  Workspace<float> ws;
  flash_attention(AttentionDims{H, Hkv, d, d, 0.25f}, io, &sp, 1, cp, ws);
  // Tiles with at least one attended pair.
  std::set<std::tuple<Index, std::int64_t, std::int64_t>> needed;
  for (Index gk = 0; gk < Hkv; ++gk)
    for (std::int64_t t0 = 0; t0 < T; t0 += bq)
      for (std::int64_t k0 = 0; k0 < T; k0 += 64) {
        bool any = false;
        for (Index h = gk * G; h < (gk + 1) * G && !any; ++h)
          for (std::int64_t qq = t0; qq < std::min<std::int64_t>(T, t0 + bq) && !any; ++qq)
            for (std::int64_t kk = k0; kk < std::min<std::int64_t>(T, k0 + 64) && !any; ++kk) any = p.visible(h, qq, kk);
        if (any) needed.insert({gk, t0, k0});
      }
  for (const auto& t : needed) EXPECT_TRUE(seen.count(t)) << "attended tile not computed";
  if (exact) {
    EXPECT_EQ(seen.size(), needed.size()) << "the kernel computed tiles the pattern leaves empty";
  }
  const double total = double(Hkv) * double((T + bq - 1) / bq) * double((T + 63) / 64);
  std::printf("  [tiles] %-28s T=%-5ld computed %5zu of %6.0f (%.1f%%), attended %zu\n", what.c_str(), long(T),
              seen.size(), total, 100.0 * double(seen.size()) / total, needed.size());
}

TEST(SparsePatterns, KernelComputesOnlyAttendedTiles) {
  const Index T = eftest::slow_or<Index>(1600, 704);  // multiples of 64 (BigBird blocks)
  check_tiles(LocalPattern::causal(100), 4, 4, T, true, "local causal 100");
  check_tiles(LocalPattern::symmetric(64), 4, 2, T, true, "local symmetric 64");
  SegmentPattern seg;
  seg.segment = 256;
  check_tiles(seg, 2, 2, T, true, "segment 256 causal");
  check_tiles(FixedPattern(32, 256, 2, 1), 2, 2, T, true, "fixed 32/256");
  std::vector<std::uint8_t> global(T, 0);
  global[3] = global[static_cast<std::size_t>(T * 9 / 16)] = 1;
  check_tiles(LongformerPattern(128, 1, global), 2, 2, T, true, "longformer 128 + 2 global");
  const BlockLayout bb = bigbird_layout(T, 4, BigBirdConfig{64, 3, 1});
  check_tiles(BlockSparsePolicy<>(bb), 4, 4, T, true, "bigbird 64 r3");
  check_tiles(BlockSparsePolicy<>(bb), 4, 1, T, true, "bigbird 64 r3 MQA");
  // Atrous tiles are classified by distance range only: every attended tile is computed.
  check_tiles(LocalBlockPattern(256), 2, 2, T, true, "local block 256");
  check_tiles(AtrousPattern(5, 40, 0), 2, 2, T, false, "atrous 5 x 40");
}

}  // namespace
