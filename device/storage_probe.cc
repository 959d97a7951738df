#include "device/storage_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace untorn {
namespace {

// struct statx as of Linux 6.11; Debian 12's headers predate the atomic fields, so the
// layout is spelled out here (offsets are part of the kernel ABI).
struct StatxTimestamp {
  int64_t tv_sec;
  uint32_t tv_nsec;
  int32_t reserved;
};
struct KernelStatx {
  uint32_t stx_mask, stx_blksize;
  uint64_t stx_attributes;
  uint32_t stx_nlink, stx_uid, stx_gid;
  uint16_t stx_mode, spare0;
  uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
  StatxTimestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
  uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
  uint64_t stx_mnt_id;
  uint32_t stx_dio_mem_align, stx_dio_offset_align;
  uint64_t stx_subvol;
  uint32_t stx_atomic_write_unit_min, stx_atomic_write_unit_max;
  uint32_t stx_atomic_write_segments_max;
  uint32_t stx_dio_read_offset_align, stx_atomic_write_unit_max_opt, spare2;
  uint64_t spare3[8];
};
static_assert(sizeof(KernelStatx) == 256);
static_assert(offsetof(KernelStatx, stx_atomic_write_unit_min) == 0xa8);

constexpr unsigned kStatxDioAlign = 0x00002000U;
constexpr unsigned kStatxWriteAtomic = 0x00010000U;

uint32_t read_sysfs_u32(const std::filesystem::path& p) {
  std::ifstream in(p);
  uint64_t v = 0;
  if (!(in >> v) || v > UINT32_MAX) return 0;
  return static_cast<uint32_t>(v);
}

// /sys/dev/block/MAJ:MIN is the partition or the whole disk; queue/ lives on the disk.
std::filesystem::path queue_dir_of(dev_t dev) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path node = fs::canonical(
      "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)), ec);
  if (ec) return {};
  if (fs::exists(node / "queue", ec)) return node / "queue";
  if (fs::exists(node.parent_path() / "queue", ec)) return node.parent_path() / "queue";
  return {};
}

}  // namespace

StorageInfo probe_storage(int fd) {
  StorageInfo info;
  KernelStatx stx;
  std::memset(&stx, 0, sizeof stx);
  if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, kStatxDioAlign | kStatxWriteAtomic, &stx) == 0) {
    if (stx.stx_mask & kStatxDioAlign) {
      info.dio_mem_align = stx.stx_dio_mem_align;
      info.dio_offset_align = stx.stx_dio_offset_align;
    }
    if (stx.stx_mask & kStatxWriteAtomic) {
      info.atomic_write_unit_min = stx.stx_atomic_write_unit_min;
      info.atomic_write_unit_max = stx.stx_atomic_write_unit_max;
      info.atomic_write_segments_max = stx.stx_atomic_write_segments_max;
    }
  }
  struct stat st;
  if (fstat(fd, &st) == 0) {
    auto queue = queue_dir_of(st.st_dev);
    if (!queue.empty()) {
      info.physical_block_size = read_sysfs_u32(queue / "physical_block_size");
      info.logical_block_size = read_sysfs_u32(queue / "logical_block_size");
    }
  }
  return info;
}

}  // namespace untorn
