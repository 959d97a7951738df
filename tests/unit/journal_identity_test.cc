// The journal must recognise its own backing file after a reboot that renumbers the
// device under it. Made real with a loop-mounted ext4: journaled writes, a "crash" (no
// checkpoint), the filesystem unmounted and re-attached under another loop device (another
// st_dev), then recovery must replay the records, not refuse them as another file's.
// Needs root, losetup and mkfs.ext4; skips, saying which is missing, where it cannot.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "device/atomic_writer.h"
#include "device/backing_file.h"
#include "device/journal_file.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"
#include "util/log.h"

namespace untorn {
namespace {

using untorn::testing::TempDir;

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// An image attached to a loop device and mounted; detached on destruction.
class LoopMount {
 public:
  LoopMount(const std::string& image, const std::string& mnt) : mnt_(mnt) {
    loop_ = run("losetup --find --show " + image + " 2>/dev/null");
    if (loop_.empty()) return;
    mounted_ = ::mount(loop_.c_str(), mnt.c_str(), "ext4", 0, nullptr) == 0;
  }
  ~LoopMount() { release(); }
  void release() {
    if (mounted_) ::umount2(mnt_.c_str(), 0);
    mounted_ = false;
    if (!loop_.empty()) run("losetup -d " + loop_);
    loop_.clear();
  }
  bool ok() const { return mounted_; }
  const std::string& loop() const { return loop_; }

 private:
  std::string mnt_, loop_;
  bool mounted_ = false;
};

std::string why_no_loop_mount() {
  if (geteuid() != 0) return "not root (loop devices need root)";
  if (std::system("command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null") != 0)
    return "losetup or mkfs.ext4 missing (scripts/deps.sh installs util-linux and e2fsprogs)";
  return "";
}

TEST(JournalIdentityTest, RecoveryReplaysAfterTheFilesystemComesBackOnAnotherDevice) {
  if (auto why = why_no_loop_mount(); !why.empty()) GTEST_SKIP() << "SKIPPED LOUDLY: " << why;
  TempDir dir;
  const std::string image = dir.file("fs.img"), mnt = dir.file("mnt"), hold = dir.file("hold.img");
  ASSERT_EQ(std::system(("truncate -s 64M " + image + " && mkfs.ext4 -q -F " + image + " && truncate -s 1M " +
                         hold + " && mkdir " + mnt).c_str()),
            0);
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  struct Restore {
    LogSink p;
    ~Restore() { set_log_sink(p); }
  } restore{previous};

  Config::Backing b;
  b.path = mnt + "/disk.img";
  b.size = 8 << 20;
  const auto data = untorn::testing::pattern(65536, 31);
  dev_t first_dev = 0;
  journal::Identity first_identity;
  {
    LoopMount fs(image, mnt);
    if (!fs.ok()) GTEST_SKIP() << "SKIPPED LOUDLY: cannot attach and mount a loop device here";
    auto dev = BackingFile::open(b, 4096);
    auto journal_file = PosixJournalFile::open(b.path + ".journal");
    first_identity = dev->identity(4096);
    JournalWriter journal(*journal_file, recover_journal(*dev, *journal_file, first_identity).header);
    AtomicWriterOptions o;
    o.native_atomic_unit = 4096;
    AtomicWriter writer(*dev, &journal, o);
    ASSERT_EQ(writer.write(4096, data, true, false), AtomicWriter::Method::journal);
    // The crash tore the in-place copy: the record is all that has the data.
    dev->write(4096, std::vector<std::byte>(65536));
    dev->sync();
    struct stat st;
    ASSERT_EQ(::stat(b.path.c_str(), &st), 0);
    first_dev = st.st_dev;
    // No flush, no checkpoint: the journal keeps its record, as after a crash.
  }
  // "Reboot": the same filesystem comes back on another loop device.
  LoopMount holder(hold, dir.file("unused"));  // takes the first free loop device...
  LoopMount fs(image, mnt);                    // ...so this one gets another
  ASSERT_TRUE(fs.ok()) << "re-mount failed";
  struct stat st;
  ASSERT_EQ(::stat(b.path.c_str(), &st), 0);
  ASSERT_NE(st.st_dev, first_dev) << "the test needs another device number: " << fs.loop();
  b.size = 0;  // use the file's size
  auto dev = BackingFile::open(b, 4096);
  auto journal_file = PosixJournalFile::open(b.path + ".journal");
  EXPECT_EQ(dev->identity(4096), first_identity);
  RecoveryResult r;
  try {
    r = recover_journal(*dev, *journal_file, dev->identity(4096));
  } catch (const std::exception& e) {
    FAIL() << "recovery refused its own journal after the device number changed: " << e.what();
  }
  EXPECT_EQ(r.records_replayed, 1u);
  std::vector<std::byte> back(data.size());
  dev->read(4096, back);
  EXPECT_EQ(back, data);
}

}  // namespace
}  // namespace untorn
