#pragma once
// Storage for large, long-lived buffers that decode streams from DRAM again and again (packed
// ternary weights): 64-byte aligned, and from kHugePageBytes on also aligned to a huge page and
// advised onto transparent huge pages (Linux madvise(MADV_HUGEPAGE), before the first touch).
//
// Why: a GEMV reads such a buffer once per token, linearly. With 4 KiB pages every 4 KiB of it costs
// a TLB miss (a page walk), and the rotating working set of a model's matrices is far larger than
// the TLB reach. With 2 MiB pages one entry covers 512 times as much. Measured on the development
// machine (bench_bitnet, docs/benchmarks.md): the cold tq2 GEMV is 12-22 % faster; Eigen's fp32 GEMV
// does not change when its own buffers get huge pages the same way (glibc.malloc.hugetlb=1).
//
// The advice is only a hint: where transparent huge pages are disabled ("never"), or on other
// systems, the buffer is an ordinary aligned allocation and everything works the same. Only whole
// 2 MiB extents can become huge pages; a tail shorter than that keeps small pages (no rounding up,
// so the memory used stays the buffer's size).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// Buffers of at least this many bytes start on a huge-page boundary and are advised onto huge pages.
constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;

/// Alignment of a weight buffer of `bytes` bytes: 64, or kHugePageBytes from that size on.
constexpr std::size_t weight_alignment(std::size_t bytes) noexcept { return bytes >= kHugePageBytes ? kHugePageBytes : 64; }

/// `bytes` zeroed bytes (bytes >= 1) aligned to weight_alignment(bytes); huge-page advice as above.
/// Throws std::bad_alloc like operator new.
inline std::shared_ptr<std::uint8_t> allocate_weight_bytes(std::size_t bytes) {
  const std::size_t align = weight_alignment(bytes);
  auto* p = static_cast<std::uint8_t*>(::operator new[](bytes, std::align_val_t(align)));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHugePageBytes) (void)::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure changes nothing
#endif
  std::memset(p, 0, bytes);  // first touch, after the advice
  return std::shared_ptr<std::uint8_t>(p, [align](std::uint8_t* q) { ::operator delete[](q, std::align_val_t(align)); });
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
