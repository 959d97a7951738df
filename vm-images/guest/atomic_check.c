/* atomic_check — run inside the guest against the NVMe namespace backed by untorn, or
 * against a file on a filesystem on it.
 * usage: atomic_check DEVICE|FILE L A REGION_OFFSET [TAG]
 *        atomic_check --extents FILE TAG    (prints "EXTENT TAG logical physical length")
 * With TAG every result name starts TAG_ and, for a file, the sysfs check is left out; after
 * each RWF_ATOMIC write to a file the write is fdatasync'd and its place on the device is
 * printed as "WRITE TAG length physical physical-before" (FIEMAP; -1: not one extent),
 * for the host's NBD log check.
 * Prints one "RESULT <name> PASS|FAIL <detail>" line per check:
 *   sysfs_atomic_limits   queue/atomic_write_unit_{min,max}_bytes == L, A
 *   statx_atomic_limits   statx STATX_WRITE_ATOMIC unit min/max == L, A
 *   rwf_atomic_sizes      RWF_ATOMIC O_DIRECT writes of every power of two L..A succeed
 *                         and read back (written at REGION_OFFSET + k MiB, naturally aligned)
 *   rwf_atomic_rejects    2A, and A at an offset not aligned to its size, get EINVAL
 * Static C so it runs in a busybox initramfs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_ATOMIC
#define RWF_ATOMIC 0x00000040
#endif
#define X_STATX_WRITE_ATOMIC 0x00010000U

struct x_ts { int64_t s; uint32_t ns; int32_t r; };
struct x_statx {
  uint32_t mask, blksize; uint64_t attributes;
  uint32_t nlink, uid, gid; uint16_t mode, s0;
  uint64_t ino, size, blocks, attributes_mask;
  struct x_ts atime, btime, ctime, mtime;
  uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
  uint64_t mnt_id; uint32_t dio_mem_align, dio_offset_align; uint64_t subvol;
  uint32_t awu_min, awu_max, aw_segments_max, dio_read_offset_align, awu_max_opt, s2;
  uint64_t s3[8];
};

static long read_long(const char *path) {
  FILE *f = fopen(path, "r"); long v = -1;
  if (f) { if (fscanf(f, "%ld", &v) != 1) v = -1; fclose(f); }
  return v;
}

static int write_atomic(int fd, size_t len, off_t off, unsigned char tag) {
  void *buf; if (posix_memalign(&buf, 4096, len)) return -ENOMEM;
  memset(buf, tag, len);
  struct iovec iov = { buf, len };
  ssize_t r = pwritev2(fd, &iov, 1, off, RWF_ATOMIC);
  int err = r < 0 ? errno : 0;
  if (r == (ssize_t)len) {
    memset(buf, 0, len);
    if (pread(fd, buf, len, off) != (ssize_t)len) err = EIO;
    for (size_t i = 0; i < len && !err; i++) if (((unsigned char *)buf)[i] != tag) err = EILSEQ;
  } else if (r >= 0) err = EIO;
  free(buf);
  return -err;
}

/* The file's extents from logical offset OFF for LEN bytes (at most 64), via FIEMAP; -1 on error. */
static int extents(int fd, uint64_t off, uint64_t len, struct fiemap_extent *out, int max) {
  char buf[sizeof(struct fiemap) + 64 * sizeof(struct fiemap_extent)];
  struct fiemap *fm = (struct fiemap *)buf;
  memset(buf, 0, sizeof buf);
  fm->fm_start = off; fm->fm_length = len; fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = max < 64 ? max : 64;
  if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) return -1;
  memcpy(out, fm->fm_extents, fm->fm_mapped_extents * sizeof *out);
  return (int)fm->fm_mapped_extents;
}

/* The device offset of file range [off, off+len) when one extent maps it all, else -1. */
static long long physical(int fd, off_t off, long len) {
  struct fiemap_extent e[1];
  if (extents(fd, (uint64_t)off, (uint64_t)len, e, 1) != 1 || e[0].fe_logical > (uint64_t)off ||
      e[0].fe_logical + e[0].fe_length < (uint64_t)(off + len)) return -1;
  return (long long)(e[0].fe_physical + ((uint64_t)off - e[0].fe_logical));
}

static int print_extents(const char *file, const char *tag) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) { perror(file); return 1; }
  struct fiemap_extent e[64]; uint64_t at = 0; int n;
  while ((n = extents(fd, at, ~0ULL - at, e, 64)) > 0) {
    for (int i = 0; i < n; i++)
      printf("EXTENT %s %llu %llu %llu\n", tag, (unsigned long long)e[i].fe_logical,
             (unsigned long long)e[i].fe_physical, (unsigned long long)e[i].fe_length);
    if (e[n - 1].fe_flags & FIEMAP_EXTENT_LAST) break;
    at = e[n - 1].fe_logical + e[n - 1].fe_length;
  }
  close(fd);
  return n < 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--extents")) return print_extents(argv[2], argv[3]);
  if (argc < 5) { fprintf(stderr, "usage: atomic_check DEVICE|FILE L A REGION_OFFSET [TAG]\n"
                                  "       atomic_check --extents FILE TAG\n"); return 2; }
  const char *dev = argv[1];
  long L = atol(argv[2]), A = atol(argv[3]);
  off_t region = atoll(argv[4]);
  char tag[64] = "";
  if (argc > 5) snprintf(tag, sizeof tag, "%s_", argv[5]);
  struct stat sb;
  int is_file = stat(dev, &sb) == 0 && S_ISREG(sb.st_mode);
  const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
  char path[256]; int failed = 0, ok;

  if (!is_file) {
    snprintf(path, sizeof path, "/sys/block/%s/queue/atomic_write_unit_min_bytes", name);
    long smin = read_long(path);
    snprintf(path, sizeof path, "/sys/block/%s/queue/atomic_write_unit_max_bytes", name);
    long smax = read_long(path);
    ok = smin == L && smax == A; failed |= !ok;
    printf("RESULT %ssysfs_atomic_limits %s atomic_write_unit_min_bytes=%ld atomic_write_unit_max_bytes=%ld (want %ld %ld)\n",
           tag, ok ? "PASS" : "FAIL", smin, smax, L, A);
  }

  struct x_statx st; memset(&st, 0, sizeof st);
  long rc = syscall(SYS_statx, AT_FDCWD, dev, 0, X_STATX_WRITE_ATOMIC, &st);
  ok = rc == 0 && (st.mask & X_STATX_WRITE_ATOMIC) && st.awu_min == (uint32_t)L && st.awu_max == (uint32_t)A;
  failed |= !ok;
  printf("RESULT %sstatx_atomic_limits %s stx_atomic_write_unit_min=%u stx_atomic_write_unit_max=%u\n",
         tag, ok ? "PASS" : "FAIL", st.awu_min, st.awu_max);

  int fd = open(dev, O_RDWR | O_DIRECT);
  if (fd < 0) { printf("RESULT %srwf_atomic_sizes FAIL open: %s\n", tag, strerror(errno)); return 1; }
  char detail[512] = ""; ok = 1; int k = 0;
  for (long len = L; len <= A; len *= 2, k++) {
    off_t at = region + (off_t)k * (1 << 20);
    long long before = is_file ? physical(fd, at, len) : -1;
    int r = write_atomic(fd, (size_t)len, at, (unsigned char)(0xA0 + k));
    if (!r && is_file && fdatasync(fd) != 0) r = -errno;
    /* where the write landed (and where that range was before: a filesystem that moved it
     * wrote it copy-on-write), for the host's NBD log check */
    if (!r && is_file) printf("WRITE %s %ld %lld %lld\n", argv[5], len, physical(fd, at, len), before);
    size_t n = strlen(detail);
    snprintf(detail + n, sizeof detail - n, " %ld:%s", len, r ? strerror(-r) : "ok");
    if (r) ok = 0;
  }
  failed |= !ok;
  printf("RESULT %srwf_atomic_sizes %s%s\n", tag, ok ? "PASS" : "FAIL", detail);

  int r_big = write_atomic(fd, (size_t)(2 * A), region + (off_t)20 * (1 << 20), 0xB1);
  int r_mis = A > L ? write_atomic(fd, (size_t)A, region + (off_t)21 * (1 << 20) + L, 0xB2) : -EINVAL;
  ok = r_big == -EINVAL && r_mis == -EINVAL; failed |= !ok;
  printf("RESULT %srwf_atomic_rejects %s 2A:%s misaligned:%s\n", tag, ok ? "PASS" : "FAIL",
         r_big ? strerror(-r_big) : "accepted", r_mis ? strerror(-r_mis) : "accepted");
  close(fd);
  return failed;
}
