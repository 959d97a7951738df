// cache/allocation.h — what a range of the backing file is, as the extent map knows it.
//
// A vocabulary type shared by the extent map, the mapped device and the request paths.
// "data" is the safe answer: it may hold data. "hole" and "zero" promise that the range
// reads as zeroes (E1: never said of data that is not zero).
#pragma once

#include <cstdint>

namespace untorn {

enum class Allocation : uint8_t {
  data,  // may hold data (the safe answer)
  hole,  // deallocated: reads as zeroes
  zero,  // allocated and known to read as zeroes (zeroed without punching)
};

constexpr const char* to_string(Allocation a) {
  switch (a) {
    case Allocation::data: return "data";
    case Allocation::hole: return "hole";
    case Allocation::zero: return "zero";
  }
  return "?";
}

}  // namespace untorn
