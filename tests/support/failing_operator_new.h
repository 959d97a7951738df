// tests/support/failing_operator_new.h — a test binary's own operator new, which fails
// when told to.
//
// Include it in exactly one source file of a test binary (it defines the replaceable
// global allocation functions). With allocations_until_failure at n >= 0 on a thread,
// that thread's n+1st allocation throws std::bad_alloc, once, and sets allocation_failed.
// Every form without an alignment argument is replaced, so new and delete always pair
// (sanitizers check that); the aligned forms keep their defaults, which pair among
// themselves.
#pragma once

#include <cstdlib>
#include <new>

namespace {
thread_local long allocations_until_failure = -1;  // -1: never fail
thread_local bool allocation_failed = false;

void* allocate(std::size_t n) {
  if (allocations_until_failure == 0) {
    allocations_until_failure = -1;
    allocation_failed = true;
    throw std::bad_alloc();
  }
  if (allocations_until_failure > 0) --allocations_until_failure;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
