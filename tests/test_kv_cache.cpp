// KVCache: layout, positions, eviction policies (none, sliding window, StreamingLLM), capacity
// errors that leave the cache untouched, and f16/bf16 storage accuracy.
#include <eigenformer/cache/kv_cache.hpp>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

// Token t's K row holds t + 0.25 * column (V: -t), so every cached value tells which token it is.
Matrix<float> token_rows(Index first, Index count, Index cols, float sign) {
  Matrix<float> m(count, cols);
  for (Index t = 0; t < count; ++t)
    for (Index c = 0; c < cols; ++c) m(t, c) = sign * (float(first + t) + 0.25f * float(c));
  return m;
}

// The (position, token) pairs a cache holds, in span order; checks every stored value of every head.
template <class E>
std::vector<std::int64_t> held_positions(const KVCache<E>& cache) {
  std::array<KVSpan<E>, 3> spans;
  const std::size_t n = cache.spans(spans);
  std::vector<std::int64_t> pos;
  const auto& cfg = cache.config();
  for (std::size_t s = 0; s < n; ++s) {
    for (Index t = 0; t < spans[s].tokens; ++t) {
      const std::int64_t p = spans[s].pos0 + t;
      pos.push_back(p);
      for (Index h = 0; h < cfg.n_kv_heads; ++h)
        for (Index i = 0; i < cfg.head_dim; ++i) {
          const float want = float(p) + 0.25f * float(h * cfg.head_dim + i);
          EXPECT_EQ(to_float(spans[s].k[t * spans[s].k_ld + h * spans[s].k_head_stride + i]), to_float(from_float<E>(want)));
          EXPECT_EQ(to_float(spans[s].v[t * spans[s].v_ld + h * spans[s].v_head_stride + i]), to_float(from_float<E>(-want)));
        }
    }
  }
  return pos;
}

std::vector<std::int64_t> range(std::int64_t a, std::int64_t b) {
  std::vector<std::int64_t> v;
  for (auto i = a; i < b; ++i) v.push_back(i);
  return v;
}

KVCache<float>::Config cfg(Index capacity, CacheEviction ev, Index sinks = 0) {
  return KVCache<float>::Config{2, 4, 4, capacity, ev, sinks};
}

void append(KVCache<float>& c, Index first, Index count) {
  c.append(token_rows(first, count, 8, 1.0f), token_rows(first, count, 8, -1.0f));
}

TEST(KVCache, AppendsKeepPositionsAndValues) {
  KVCache<float> c(cfg(10, CacheEviction::none));
  EXPECT_EQ(c.size(), 0);
  append(c, 0, 3);
  append(c, 3, 1);
  append(c, 4, 6);
  EXPECT_EQ(c.size(), 10);
  EXPECT_EQ(c.next_position(), 10);
  EXPECT_EQ(held_positions(c), range(0, 10));
}

TEST(KVCache, FullCacheThrowsAndChangesNothing) {
  KVCache<float> c(cfg(5, CacheEviction::none));
  append(c, 0, 4);
  try {
    append(c, 4, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::capacity);
    EXPECT_NE(std::string(e.what()).find("holds 4 of 5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.size(), 4);
  EXPECT_EQ(c.next_position(), 4);
  EXPECT_EQ(held_positions(c), range(0, 4));
  append(c, 4, 1);  // exactly full is fine
  EXPECT_THROW(append(c, 5, 1), Error);
  EXPECT_EQ(held_positions(c), range(0, 5));
}

TEST(KVCache, SlidingWindowKeepsTheNewestTokens) {
  KVCache<float> c(cfg(4, CacheEviction::sliding_window));
  Index next = 0;
  for (Index step : {1, 2, 1, 3, 1, 5, 2}) {
    append(c, next, step);
    next += step;
    EXPECT_EQ(held_positions(c), range(std::max<Index>(0, next - 4), next)) << "after " << next;
  }
}

TEST(KVCache, StreamingKeepsSinksAndTheNewestTokens) {
  KVCache<float> c(cfg(6, CacheEviction::streaming, 2));
  Index next = 0;
  for (Index step : {1, 1, 3, 2, 1, 7, 1}) {
    append(c, next, step);
    next += step;
    std::vector<std::int64_t> want;
    for (std::int64_t p = 0; p < std::min<Index>(2, next); ++p) want.push_back(p);
    for (std::int64_t p = std::max<Index>(2, next - 4); p < next; ++p) want.push_back(p);
    EXPECT_EQ(held_positions(c), want) << "after " << next;
  }
}

TEST(KVCache, ConfigAndShapeErrors) {
  EXPECT_THROW(KVCache<float>(cfg(0, CacheEviction::none)), Error);
  EXPECT_THROW(KVCache<float>(cfg(4, CacheEviction::none, 1)), Error);       // sinks need streaming
  EXPECT_THROW(KVCache<float>(cfg(4, CacheEviction::streaming, 4)), Error);  // sinks < capacity
  KVCache<float> c(cfg(4, CacheEviction::none));
  EXPECT_THROW(c.append(Matrix<float>(1, 7), Matrix<float>(1, 8)), Error);
  EXPECT_THROW(c.append(Matrix<float>(1, 8), Matrix<float>(2, 8)), Error);
  EXPECT_EQ(c.size(), 0);
}

TEST(KVCache, ClearForgetsTokens) {
  KVCache<float> c(cfg(4, CacheEviction::sliding_window));
  append(c, 0, 6);
  c.clear();
  EXPECT_EQ(c.size(), 0);
  EXPECT_EQ(c.next_position(), 0);
  append(c, 0, 2);
  EXPECT_EQ(held_positions(c), range(0, 2));
}

TEST(KVCache, HalfStorageSizesAndRounding) {
  KVCache<f16>::Config hc{2, 4, 4, 8, CacheEviction::none, 0};
  KVCache<f16> h(hc);
  KVCache<bf16> b(KVCache<bf16>::Config{2, 4, 4, 8, CacheEviction::none, 0});
  KVCache<float> f(cfg(8, CacheEviction::none));
  EXPECT_EQ(h.bytes() * 2, f.bytes());
  EXPECT_EQ(b.bytes(), h.bytes());
  EXPECT_EQ(KVCache<f16>::bytes_per_token(8, 128, 128), 8u * 256u * 2u);
  h.append(token_rows(0, 3, 8, 1.0f), token_rows(0, 3, 8, -1.0f));
  b.append(token_rows(0, 3, 8, 1.0f), token_rows(0, 3, 8, -1.0f));
  held_positions(h);  // values equal their float16 rounding
  held_positions(b);
  // f16 overflow: finite values beyond 65504 saturate to +-65504 (documented; more cases in
  // test_edge_cases.cpp EdgeCache.HalfCachesSaturateFiniteOverflow).
  Matrix<float> big = Matrix<float>::Constant(1, 8, 1e6f);
  h.append(big, -big);
  std::array<KVSpan<f16>, 3> spans;
  h.spans(spans);
  EXPECT_EQ(to_float(spans[0].k[3 * 4]), 65504.0f);
  EXPECT_EQ(to_float(spans[0].v[3 * 4]), -65504.0f);
}

}  // namespace
