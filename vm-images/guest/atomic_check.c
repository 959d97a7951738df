/* atomic_check — run inside the guest against the NVMe namespace backed by untorn.
 * usage: atomic_check DEVICE L A REGION_OFFSET
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

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: atomic_check DEVICE L A REGION_OFFSET\n"); return 2; }
  const char *dev = argv[1];
  long L = atol(argv[2]), A = atol(argv[3]);
  off_t region = atoll(argv[4]);
  const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
  char path[256]; int failed = 0;

  snprintf(path, sizeof path, "/sys/block/%s/queue/atomic_write_unit_min_bytes", name);
  long smin = read_long(path);
  snprintf(path, sizeof path, "/sys/block/%s/queue/atomic_write_unit_max_bytes", name);
  long smax = read_long(path);
  int ok = smin == L && smax == A; failed |= !ok;
  printf("RESULT sysfs_atomic_limits %s atomic_write_unit_min_bytes=%ld atomic_write_unit_max_bytes=%ld (want %ld %ld)\n",
         ok ? "PASS" : "FAIL", smin, smax, L, A);

  struct x_statx st; memset(&st, 0, sizeof st);
  long rc = syscall(SYS_statx, AT_FDCWD, dev, 0, X_STATX_WRITE_ATOMIC, &st);
  ok = rc == 0 && (st.mask & X_STATX_WRITE_ATOMIC) && st.awu_min == (uint32_t)L && st.awu_max == (uint32_t)A;
  failed |= !ok;
  printf("RESULT statx_atomic_limits %s stx_atomic_write_unit_min=%u stx_atomic_write_unit_max=%u\n",
         ok ? "PASS" : "FAIL", st.awu_min, st.awu_max);

  int fd = open(dev, O_RDWR | O_DIRECT);
  if (fd < 0) { printf("RESULT rwf_atomic_sizes FAIL open: %s\n", strerror(errno)); return 1; }
  char detail[512] = ""; ok = 1; int k = 0;
  for (long len = L; len <= A; len *= 2, k++) {
    int r = write_atomic(fd, (size_t)len, region + (off_t)k * (1 << 20), (unsigned char)(0xA0 + k));
    size_t n = strlen(detail);
    snprintf(detail + n, sizeof detail - n, " %ld:%s", len, r ? strerror(-r) : "ok");
    if (r) ok = 0;
  }
  failed |= !ok;
  printf("RESULT rwf_atomic_sizes %s%s\n", ok ? "PASS" : "FAIL", detail);

  int r_big = write_atomic(fd, (size_t)(2 * A), region + (off_t)20 * (1 << 20), 0xB1);
  int r_mis = A > L ? write_atomic(fd, (size_t)A, region + (off_t)21 * (1 << 20) + L, 0xB2) : -EINVAL;
  ok = r_big == -EINVAL && r_mis == -EINVAL; failed |= !ok;
  printf("RESULT rwf_atomic_rejects %s 2A:%s misaligned:%s\n", ok ? "PASS" : "FAIL",
         r_big ? strerror(-r_big) : "accepted", r_mis ? strerror(-r_mis) : "accepted");
  close(fd);
  return failed;
}
