#include "device/rbd_image.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include "conf/units.h"
#include "device/rados_journal_file.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {


[[noreturn]] void fail_open(const std::string& name, const std::string& what, int err) {
  throw IoError(err, "backing.rbd: RBD image " + name + ": " + what);
}

// Owns an rbd_image_t until handed over.
struct ImageHandle {
  rbd_image_t h = nullptr;
  ~ImageHandle() {
    if (h) rbd_close(h);
  }
};

// Owns a librbd completion.
struct Completion {
  rbd_completion_t c = nullptr;
  Completion() {
    int r = rbd_aio_create_completion(nullptr, nullptr, &c);
    if (r < 0) throw IoError(-r, "librbd: cannot make a completion: " + ceph_error_text(r));
  }
  ~Completion() {
    if (c) rbd_aio_release(c);
  }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  Completion(Completion&& o) noexcept : c(o.c) { o.c = nullptr; }
};

// The clients holding the image's exclusive lock, for a message.
std::string lock_owners(rbd_image_t image) {
  rbd_lock_mode_t mode;
  char* owners[8] = {};
  size_t count = 8;
  if (rbd_lock_get_owners(image, &mode, owners, &count) < 0 || count == 0) return "another client";
  std::string out;
  for (size_t i = 0; i < count; ++i) out += (i ? ", " : "") + std::string(owners[i]);
  rbd_lock_get_owners_cleanup(owners, count);
  return out;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// What rbd_diff_iterate2 reports, collected first: the API does not promise its callbacks
// come in offset order, so they are sorted before the gaps between them become holes.
struct DiffWalk {
  std::vector<Extent> seen;  // as reported (clipped later)
};

int diff_callback(uint64_t offset, size_t length, int exists, void* arg) {
  try {
    static_cast<DiffWalk*>(arg)->seen.push_back({offset, length, exists != 0});
    return 0;
  } catch (...) {
    return -ENOMEM;  // on a librados thread: nothing may escape
  }
}

// The union of the data reported (an object that exists), clipped to [begin, end), with
// holes between: sorted first, and overlaps merged, so data is never called a hole.
std::vector<Extent> allocation_from(std::vector<Extent> seen, uint64_t begin, uint64_t end) {
  std::erase_if(seen, [](const Extent& e) { return !e.data; });  // not existing: a hole anyway
  std::sort(seen.begin(), seen.end(), [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  std::vector<Extent> out;
  uint64_t next = begin;  // everything before it is in `out`
  for (const Extent& e : seen) {
    const uint64_t b = std::max(e.offset, next), en = std::min(e.offset + e.length, end);
    if (b >= en) continue;
    if (b > next) out.push_back({next, b - next, false});
    if (!out.empty() && out.back().data && out.back().offset + out.back().length == b)
      out.back().length += en - b;
    else
      out.push_back({b, en - b, true});
    next = en;
  }
  if (next < end) out.push_back({next, end - next, false});
  return out;
}

// librbd applies the pool's and the image's own config overrides at open, over what
// RadosCluster set: an image whose effective settings turn a client-side cache on (the
// in-memory cache, or the persistent write-log cache, which makes a flush durable on this
// host's disk only) cannot keep FLUSH, FUA or an atomic write across hosts: refused.
void refuse_client_cache(rbd_image_t image, const std::string& name) {
  std::vector<rbd_config_option_t> options(1024);
  int count = static_cast<int>(options.size());
  int r = rbd_config_image_list(image, options.data(), &count);
  if (r == -ERANGE) {
    options.resize(static_cast<size_t>(count));
    r = rbd_config_image_list(image, options.data(), &count);
  }
  if (r < 0) fail_open(name, "cannot read its effective configuration: " + ceph_error_text(r), -r);
  std::string refused;
  for (int i = 0; i < count; ++i) {
    const std::string key = options[i].name ? options[i].name : "";
    const std::string value = options[i].value ? options[i].value : "";
    if ((key == "rbd_cache" && value == "true") || (key == "rbd_plugins" && value.find("pwl_cache") != std::string::npos))
      refused += (refused.empty() ? "" : ", ") + key + "=" + value +
                 (options[i].source == RBD_CONFIG_SOURCE_IMAGE  ? " (set on the image)"
                  : options[i].source == RBD_CONFIG_SOURCE_POOL ? " (set on the pool)"
                                                                : "");
  }
  rbd_config_image_list_cleanup(options.data(), count);
  if (!refused.empty())
    fail_open(name, "its effective configuration turns a librbd client cache on (" + refused +
                        "): a write it acknowledges is not on the OSDs, so FLUSH, FUA and atomic writes "
                        "would not hold; remove it (`rbd config image rm` / `rbd config pool rm`)",
              EINVAL);
}

}  // namespace

std::unique_ptr<RbdImage> RbdImage::open(const Config::Backing& backing, uint32_t logical_block_size,
                                         bool readonly) {
  const std::string& name = backing.rbd;
  const auto slash = name.find('/');
  const std::string pool = name.substr(0, slash);
  const std::string image_name = name.substr(slash + 1);
  auto cluster = RadosCluster::connect(backing.ceph_conf, backing.ceph_id, pool);

  ImageHandle image;
  int r = readonly ? rbd_open_read_only(cluster->ioctx(), image_name.c_str(), &image.h, nullptr)
                   : rbd_open(cluster->ioctx(), image_name.c_str(), &image.h, nullptr);
  if (r == -ENOENT)
    fail_open(name, "no such image in pool " + pool + " (create it with `rbd create " + name +
                        " --size ...`)",
              ENOENT);
  if (r == -EACCES || r == -EPERM)
    fail_open(name, "cannot open: " + ceph_error_text(r) + ": " + cluster->client() +
                        " (backing.ceph_id) lacks the caps for it (`ceph auth get " + cluster->client() + "`)",
              -r);
  if (r < 0) fail_open(name, "cannot open: " + ceph_error_text(r), -r);

  if (!readonly) {
    uint64_t features = 0;
    r = rbd_get_features(image.h, &features);
    if (r < 0) fail_open(name, "cannot read its features: " + ceph_error_text(r), -r);
    if (!(features & RBD_FEATURE_EXCLUSIVE_LOCK))
      fail_open(name,
                "has no exclusive-lock feature, so nothing stops a second server writing it; "
                "enable it with `rbd feature enable " + name + " exclusive-lock`",
                EINVAL);
    r = rbd_lock_acquire(image.h, RBD_LOCK_MODE_EXCLUSIVE);
    if (r == -EROFS || r == -EBUSY)
      fail_open(name, "is in use by the client at " + lock_owners(image.h) +
                          ", which holds its exclusive lock (another untorn server, or a QEMU or "
                          "rbd client); once that client is dead its lock is broken at the next open",
                EBUSY);
    if (r < 0) fail_open(name, "cannot take its exclusive lock: " + ceph_error_text(r), -r);
  }

  uint64_t size = 0;
  r = rbd_get_size(image.h, &size);
  if (r < 0) fail_open(name, "cannot read its size: " + ceph_error_text(r), -r);
  const SizePlan plan = plan_backing_size(size, backing, logical_block_size, readonly, "image");
  if (!plan.problem.empty()) fail_open(name, plan.problem, EINVAL);
  if (plan.resize) {
    r = rbd_resize(image.h, plan.serve);
    if (r < 0) fail_open(name, "cannot resize: " + ceph_error_text(r), -r);
    log_info("resized RBD image " + name + " from " + conf::format_size(size) + " to " +
             conf::format_size(plan.serve));
    size = plan.serve;
  }

  auto out = std::make_unique<RbdImage>(OpenedBy{}, std::move(cluster), image.h, name, readonly);
  image.h = nullptr;  // now the RbdImage's
  out->size_ = size;
  rbd_image_info_t info{};
  r = rbd_stat(out->image_, &info, sizeof info);
  if (r < 0) fail_open(name, "cannot stat: " + ceph_error_text(r), -r);
  out->object_size_ = info.obj_size;
  if (out->object_size_ < 4096 || !conf::is_power_of_two(out->object_size_))
    fail_open(name, "its object size " + std::to_string(out->object_size_) + " is not a power of two >= 4K",
              EINVAL);
  // Striping (stripe_count > 1) sends each stripe unit of an object-sized range to another
  // object: then only a stripe unit is one RADOS op.
  uint64_t stripe_unit = 0, stripe_count = 1;
  if (rbd_get_stripe_unit(out->image_, &stripe_unit) == 0 && rbd_get_stripe_count(out->image_, &stripe_count) == 0 &&
      stripe_count > 1) {
    if (stripe_unit < 512 || !conf::is_power_of_two(stripe_unit))
      fail_open(name, "its stripe unit " + std::to_string(stripe_unit) + " is not a power of two >= 512", EINVAL);
    out->atomic_unit_ = stripe_unit;
  } else {
    out->atomic_unit_ = out->object_size_;
  }
  if (!readonly) refuse_client_cache(out->image_, name);
  char id[128] = {};
  r = rbd_get_id(out->image_, id, sizeof id);
  if (r < 0) fail_open(name, "cannot read its id: " + ceph_error_text(r), -r);
  out->image_id_ = id;
  struct timespec created {};
  if (rbd_get_create_timestamp(out->image_, &created) == 0)
    out->created_ns_ = static_cast<uint64_t>(created.tv_sec) * 1000000000ull + static_cast<uint64_t>(created.tv_nsec);
  log_debug("opened RBD image " + name + " (id " + out->image_id_ + ", " + conf::format_size(size) +
            ", objects of " + conf::format_size(out->object_size_) + ") as " + out->cluster_->client() +
            (readonly ? ", read-only" : ", exclusive lock held"));
  return out;
}

RbdImage::RbdImage(OpenedBy, std::shared_ptr<RadosCluster> cluster, rbd_image_t image, std::string name,
                   bool readonly)
    : cluster_(std::move(cluster)),
      image_(image),
      name_(std::move(name)),
      description_("RBD image " + name_),
      readonly_(readonly) {}

RbdImage::~RbdImage() {
  if (!readonly_) rbd_lock_release(image_);
  rbd_close(image_);
}

void RbdImage::check_range(uint64_t offset, uint64_t length, const char* what) const {
  if (offset > size_ || length > size_ - offset)
    throw IoError(EINVAL, std::string(what) + " beyond the end of " + description_);
}

void RbdImage::refuse_if_readonly(const char* what) const {
  if (readonly_) throw IoError(EROFS, std::string(what) + " to " + description_ + ", opened read-only");
}

void RbdImage::fail(int ret, const std::string& what, uint64_t offset, uint64_t length) const {
  const int err = ret < 0 ? -ret : EIO;
  const std::string message = description_ + ": " + what + " of " + std::to_string(length) + " bytes at " +
                              std::to_string(offset) + " failed: " + ceph_error_text(err);
  // The client sees EIO for an I/O error, ENOSPC as itself (a full cluster), and EIO for
  // anything else librbd says (a blocklisted client gets ESHUTDOWN/EBLOCKLISTED).
  throw IoError(err == ENOSPC || err == EDQUOT ? ENOSPC : EIO, message);
}

void RbdImage::read(uint64_t offset, std::span<std::byte> dst) {
  check_range(offset, dst.size(), "read");
  ssize_t r = rbd_read(image_, offset, dst.size(), reinterpret_cast<char*>(dst.data()));
  if (r < 0 || static_cast<size_t>(r) != dst.size()) fail(r < 0 ? static_cast<int>(r) : -EIO, "read", offset, dst.size());
}

void RbdImage::write(uint64_t offset, std::span<const std::byte> src) {
  refuse_if_readonly("write");
  check_range(offset, src.size(), "write");
  ssize_t r = rbd_write(image_, offset, src.size(), reinterpret_cast<const char*>(src.data()));
  if (r < 0 || static_cast<size_t>(r) != src.size()) fail(r < 0 ? static_cast<int>(r) : -EIO, "write", offset, src.size());
}

void RbdImage::write_batch(std::span<WriteRequest> writes) {
  // Reserved up front: once a write is submitted nothing may throw (librbd reads the
  // caller's buffers until it completes).
  std::vector<Completion> completions;
  completions.reserve(writes.size());
  std::vector<WriteRequest*> submitted;
  submitted.reserve(writes.size());
  for (auto& w : writes) {
    w.error = 0;
    w.message.clear();
    try {
      refuse_if_readonly("write");
      check_range(w.offset, w.data.size(), "write");
      Completion c;
      int r = rbd_aio_write(image_, w.offset, w.data.size(), reinterpret_cast<const char*>(w.data.data()), c.c);
      if (r < 0) fail(r, "write", w.offset, w.data.size());
      completions.push_back(std::move(c));
      submitted.push_back(&w);
    } catch (const IoError& e) {
      w.error = e.err();
      w.message = e.what();
    }
  }
  for (size_t i = 0; i < completions.size(); ++i) {
    rbd_aio_wait_for_complete(completions[i].c);
    ssize_t r = rbd_aio_get_return_value(completions[i].c);
    WriteRequest& w = *submitted[i];
    if (r < 0) {
      try {
        fail(static_cast<int>(r), "write", w.offset, w.data.size());
      } catch (const IoError& e) {
        w.error = e.err();
        w.message = e.what();
      }
    }
  }
  // A completed write is on the OSDs (no client cache: open refuses one), so a durable
  // write needs nothing more.
}

void RbdImage::write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) {
  refuse_if_readonly("write zeroes");
  check_range(offset, length, "write zeroes");
  if (options.fast_only && !options.may_punch)
    throw IoError(ENOTSUP, description_ + ": zeroes without deallocating are written in full, not fast");
  const int flags = options.may_punch ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
  // size_t is 64-bit here; librbd splits by object itself.
  ssize_t r = rbd_write_zeroes(image_, offset, length, flags, 0);
  if (r < 0) fail(static_cast<int>(r), "write zeroes", offset, length);
}

void RbdImage::sync() {
  int r = rbd_flush(image_);
  if (r < 0) fail(r, "flush", 0, size_);
}

std::vector<Extent> RbdImage::extents(uint64_t offset, uint64_t length) {
  check_range(offset, length, "block status");
  if (length == 0) return {};
  DiffWalk walk;
  int r = rbd_diff_iterate2(image_, nullptr, offset, length, /*include_parent=*/1, /*whole_object=*/1,
                            diff_callback, &walk);
  if (r < 0) fail(r, "allocation query", offset, length);
  return allocation_from(std::move(walk.seen), offset, offset + length);
}

uint64_t RbdImage::size_on_disk() const {
  uint64_t size = 0;
  int r = rbd_get_size(image_, &size);
  if (r < 0) throw IoError(EIO, description_ + ": cannot read its size: " + ceph_error_text(r));
  return size;
}

journal::Identity RbdImage::identity(uint32_t logical_block_size) const {
  return {size_, fnv1a64(image_id_), created_ns_, logical_block_size};
}

std::unique_ptr<JournalFile> RbdImage::open_journal(const Config::Journal&) {
  return RadosJournalFile::open(cluster_, journal_object());
}

std::unique_ptr<JournalFile> RbdImage::open_journal_readonly(const Config::Journal&) {
  return RadosJournalFile::open_readonly(cluster_, journal_object());
}

}  // namespace untorn
