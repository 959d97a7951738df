// tests/bench/status_walk.cc — walks a whole NBD export with block status, the way
// QEMU's NBD client does (REQ_ONE, from each extent's end to the end of the export), and
// reports queries per second. For tests/bench/extents.sh.
// Usage: status_walk URI [--all]   (--all: without REQ_ONE, as many extents a reply as the
// server sends)
// Prints one line: "queries N extents N data_extents N seconds S queries_per_s Q".
#include <libnbd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

struct Walk {
  uint64_t next = 0;  // where the replies so far end
  uint64_t extents = 0, data_extents = 0;
  bool last_data = false;
};

int on_extents(void* user, const char* context, uint64_t offset, uint32_t* entries, size_t n,
               int* /*error*/) {
  if (std::strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
  auto* w = static_cast<Walk*>(user);
  for (size_t i = 0; i + 1 < n; i += 2) {
    const bool data = !(entries[i + 1] & LIBNBD_STATE_HOLE);
    if (w->extents == 0 || data != w->last_data) {  // count merged runs, as a map would
      ++w->extents;
      if (data) ++w->data_extents;
    }
    w->last_data = data;
    offset += entries[i];
  }
  w->next = offset;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: status_walk URI [--all]\n");
    return 2;
  }
  const bool req_one = !(argc > 2 && std::string(argv[2]) == "--all");
  nbd_handle* h = nbd_create();
  if (!h || nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_connect_uri(h, argv[1]) == -1) {
    std::fprintf(stderr, "status_walk: %s\n", nbd_get_error());
    return 1;
  }
  const int64_t size = nbd_get_size(h);
  const uint64_t align = 4096;
  const uint64_t max_count = (uint64_t{UINT32_MAX} / align) * align;
  Walk w;
  uint64_t queries = 0;
  const auto start = std::chrono::steady_clock::now();
  while (w.next < static_cast<uint64_t>(size)) {
    const uint64_t at = w.next;
    const uint64_t count = std::min<uint64_t>(max_count, static_cast<uint64_t>(size) - at);
    nbd_extent_callback cb{.callback = on_extents, .user_data = &w, .free = nullptr};
    if (nbd_block_status(h, count, at, cb, req_one ? LIBNBD_CMD_FLAG_REQ_ONE : 0) == -1) {
      std::fprintf(stderr, "status_walk: block status at %llu: %s\n",
                   static_cast<unsigned long long>(at), nbd_get_error());
      return 1;
    }
    ++queries;
    if (w.next <= at) {
      std::fprintf(stderr, "status_walk: no progress at %llu\n", static_cast<unsigned long long>(at));
      return 1;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("queries %llu extents %llu data_extents %llu seconds %.3f queries_per_s %.0f\n",
              static_cast<unsigned long long>(queries), static_cast<unsigned long long>(w.extents),
              static_cast<unsigned long long>(w.data_extents), s, queries / s);
  nbd_shutdown(h, 0);
  nbd_close(h);
  return 0;
}
