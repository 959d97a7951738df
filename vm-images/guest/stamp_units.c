/* stamp_units — self-describing atomic units for the guest crash test.
 * Guest:  stamp_units write DEVICE L A OFFSET SIZE THREADS CYCLE
 *   THREADS threads each write their own slice of [OFFSET, OFFSET+SIZE) with RWF_ATOMIC
 *   O_DIRECT writes of powers of two L..A (naturally aligned); every 512-byte sector names
 *   its write (id, offset, length, index). Every 8 writes a thread fdatasyncs and prints
 *   "FLUSHED id offset length" for its last write: durable from then on (D1). Runs until
 *   a write fails (the host killed the server).
 * Host:   stamp_units check IMAGE OFFSET SIZE FLUSHED_LOG
 *   Reads the region of the backing file after recovery and prints RESULT lines:
 *   every write seen is whole (A2: all its sectors show it or a later write of the same
 *   thread), every FLUSHED write is there or overwritten by a later one (D1), no garbage.
 * Guest:  stamp_units fill FILE SIZE A
 *   Creates FILE with SIZE bytes of zeroes written by O_DIRECT writes of A bytes (none
 *   larger), then fdatasyncs: a file whose extents are allocated and written.
 * Ids: cycle << 26 | thread << 22 | n, so later writes of a thread have larger ids. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_ATOMIC
#define RWF_ATOMIC 0x00000040
#endif
#define SECTOR 512
#define MAGIC 0x554e5452u
#define THREAD_OF(id) (((id) >> 22) & 0xf)

static unsigned char filler(uint32_t id, uint32_t index, size_t i) {
  return (unsigned char)((id * 2654435761u + index * 40503u + (uint32_t)i * 131u) >> 7);
}

static void stamp(unsigned char *buf, uint32_t len, uint32_t id, uint64_t off) {
  for (uint32_t s = 0; s * SECTOR < len; s++) {
    unsigned char *p = buf + (size_t)s * SECTOR;
    uint32_t magic = MAGIC;
    memcpy(p, &magic, 4); memcpy(p + 4, &id, 4); memcpy(p + 8, &off, 8); memcpy(p + 16, &len, 4); memcpy(p + 20, &s, 4);
    for (size_t i = 24; i < SECTOR; i++) p[i] = filler(id, s, i);
  }
}

/* 0: zero sector, 1: stamped (fills id/off/len), -1: garbage */
static int parse(const unsigned char *p, uint64_t at, uint32_t *id, uint64_t *off, uint32_t *len) {
  int zero = 1;
  for (int i = 0; i < SECTOR && zero; i++) zero = p[i] == 0;
  if (zero) return 0;
  uint32_t magic, index;
  memcpy(&magic, p, 4); memcpy(id, p + 4, 4); memcpy(off, p + 8, 8); memcpy(len, p + 16, 4); memcpy(&index, p + 20, 4);
  if (magic != MAGIC || (uint64_t)index * SECTOR >= *len || *off + (uint64_t)index * SECTOR != at) return -1;
  for (size_t i = 24; i < SECTOR; i++) if (p[i] != filler(*id, index, i)) return -1;
  return 1;
}

struct writer { int fd; uint32_t L, A, t, cycle; uint64_t base, span; };
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void *write_loop(void *arg) {
  struct writer *w = arg;
  unsigned char *buf;
  if (posix_memalign((void **)&buf, 4096, w->A)) return NULL;
  unsigned seed = w->cycle * 1000 + w->t;
  int sizes = 0; for (uint32_t s = w->L; s <= w->A; s *= 2) sizes++;
  for (uint32_t n = 1;; n++) {
    uint32_t len = w->L << (rand_r(&seed) % sizes);
    uint64_t off = w->base + (uint64_t)(rand_r(&seed) % (w->span / len)) * len;
    uint32_t id = w->cycle << 26 | w->t << 22 | n;
    stamp(buf, len, id, off);
    struct iovec iov = { buf, len };
    if (pwritev2(w->fd, &iov, 1, off, RWF_ATOMIC) != (ssize_t)len) break;
    if (n % 8 == 0) {
      if (fdatasync(w->fd) != 0) break;
      pthread_mutex_lock(&out_lock);
      printf("FLUSHED %u %llu %u\n", id, (unsigned long long)off, len);
      fflush(stdout);
      pthread_mutex_unlock(&out_lock);
    }
  }
  free(buf);
  return NULL;
}

static int do_write(char **a) {
  int fd = open(a[0], O_RDWR | O_DIRECT);
  if (fd < 0) { perror("open"); return 1; }
  uint32_t L = atoi(a[1]), A = atoi(a[2]), threads = atoi(a[5]), cycle = atoi(a[6]);
  uint64_t off = strtoull(a[3], 0, 0), size = strtoull(a[4], 0, 0);
  pthread_t th[16]; struct writer w[16];
  for (uint32_t t = 0; t < threads && t < 16; t++) {
    w[t] = (struct writer){fd, L, A, t, cycle, off + t * (size / threads), size / threads};
    pthread_create(&th[t], NULL, write_loop, &w[t]);
  }
  for (uint32_t t = 0; t < threads && t < 16; t++) pthread_join(th[t], NULL);
  return 0;
}

static int do_check(char **a) {
  uint64_t base = strtoull(a[1], 0, 0), size = strtoull(a[2], 0, 0), n = size / SECTOR;
  FILE *img = fopen(a[0], "rb");
  if (!img || fseeko(img, (off_t)base, SEEK_SET) != 0) { perror("image"); return 1; }
  unsigned char *data = malloc(size);
  if (!data || fread(data, 1, size, img) != size) { fprintf(stderr, "short read of image\n"); return 1; }
  uint32_t *ids = calloc(n, 4);
  uint64_t garbage = 0, torn = 0, lost = 0, writes = 0, flushed = 0;
  for (uint64_t x = 0; x < n; x++) {
    uint32_t id, len; uint64_t off;
    int k = parse(data + x * SECTOR, base + x * SECTOR, &id, &off, &len);
    if (k < 0) garbage++;
    if (k > 0) ids[x] = id;
  }
  /* A2: every write seen anywhere is whole where no later write of its thread covers it. */
  for (uint64_t x = 0; x < n; x++) {
    if (!ids[x]) continue;
    uint32_t id, len; uint64_t off;
    parse(data + x * SECTOR, base + x * SECTOR, &id, &off, &len);
    /* judge each write once, from the first sector where it appears */
    int seen_before = 0;
    for (uint64_t s = (off - base) / SECTOR; s < x && !seen_before; s++) seen_before = ids[s] == id;
    if (seen_before) continue;
    writes++;
    for (uint64_t s = (off - base) / SECTOR; s < (off - base + len) / SECTOR; s++)
      if (!ids[s] || THREAD_OF(ids[s]) != THREAD_OF(id) || ids[s] < id) { torn++; break; }
  }
  FILE *log = fopen(a[3], "r");
  char line[256];
  while (log && fgets(line, sizeof line, log)) {
    unsigned id, len; unsigned long long off;
    if (sscanf(line, "FLUSHED %u %llu %u", &id, &off, &len) != 3 || off < base || off + len > base + size) continue;
    flushed++;
    for (uint64_t s = (off - base) / SECTOR; s < (off - base + len) / SECTOR; s++)
      if (!ids[s] || THREAD_OF(ids[s]) != THREAD_OF(id) || ids[s] < id) { lost++; break; }
  }
  printf("RESULT crash_units_whole %s %llu writes checked, %llu torn, %llu garbage sectors\n",
         torn || garbage ? "FAIL" : "PASS", (unsigned long long)writes, (unsigned long long)torn, (unsigned long long)garbage);
  printf("RESULT crash_flushed_present %s %llu flushed writes checked, %llu lost\n",
         lost || !flushed ? "FAIL" : "PASS", (unsigned long long)flushed, (unsigned long long)lost);
  return torn || garbage || lost || !flushed;
}

static int do_fill(char **a) {
  uint64_t size = strtoull(a[1], 0, 0); size_t unit = strtoull(a[2], 0, 0);
  int fd = open(a[0], O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) { perror(a[0]); return 1; }
  void *buf;
  if (posix_memalign(&buf, 4096, unit)) return 1;
  memset(buf, 0, unit);
  for (uint64_t at = 0; at < size; at += unit)
    if (pwrite(fd, buf, unit, (off_t)at) != (ssize_t)unit) { perror("fill"); return 1; }
  if (fdatasync(fd) != 0) { perror("fdatasync"); return 1; }
  free(buf);
  return close(fd) != 0;
}

int main(int argc, char **argv) {
  if (argc >= 5 && !strcmp(argv[1], "fill")) return do_fill(argv + 2);
  if (argc >= 9 && !strcmp(argv[1], "write")) return do_write(argv + 2);
  if (argc >= 6 && !strcmp(argv[1], "check")) return do_check(argv + 2);
  fprintf(stderr, "usage: stamp_units write DEVICE L A OFFSET SIZE THREADS CYCLE\n"
                  "       stamp_units check IMAGE OFFSET SIZE FLUSHED_LOG\n"
                  "       stamp_units fill FILE SIZE A\n");
  return 2;
}
