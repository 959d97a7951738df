// The RWF_ATOMIC path on a real filesystem that offers it: XFS on Linux 6.16+ does atomic
// writes in software on any device. The test makes an XFS image, mounts it on a loop
// device (needs root and mkfs.xfs) and skips, saying why, where it cannot.
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "device/atomic_writer.h"
#include "device/backing_file.h"
#include "tests/support/temp_dir.h"

namespace untorn {
namespace {

class XfsMount {
 public:
  explicit XfsMount(const untorn::testing::TempDir& dir) : image_(dir.file("xfs.img")), mnt_(dir.file("mnt")) {
    if (geteuid() != 0) {
      why_ = "not root (loop-mounting needs root)";
      return;
    }
    if (std::system("command -v mkfs.xfs >/dev/null") != 0) {
      why_ = "mkfs.xfs is missing (scripts/deps.sh installs xfsprogs)";
      return;
    }
    std::string cmd = "truncate -s 320M " + image_ + " && mkfs.xfs -q -f " + image_ + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      why_ = "mkfs.xfs failed on " + image_;
      return;
    }
    cmd = "mkdir -p " + mnt_ + " && mount -o loop " + image_ + " " + mnt_ + " 2>/dev/null";
    mounted_ = std::system(cmd.c_str()) == 0;
    if (!mounted_) why_ = "mount -o loop failed (no loop devices in this container?)";
  }
  ~XfsMount() {
    if (mounted_) umount2(mnt_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_; }
  std::string file(const std::string& name) const { return mnt_ + "/" + name; }

 private:
  std::string image_, mnt_;
  bool mounted_ = false;
  std::string why_;
};

TEST(XfsAtomicTest, RwfAtomicWritesOnXfs) {
  untorn::testing::TempDir dir;
  XfsMount xfs(dir);
  if (!xfs.mounted()) GTEST_SKIP() << "SKIPPED LOUDLY: cannot make and loop-mount an XFS image here: " << xfs.why_not();
  Config::Backing b;
  b.path = xfs.file("disk.img");
  b.size = 64 << 20;
  auto dev = BackingFile::open(b, 4096);
  const StorageInfo& s = dev->storage();
  if (s.atomic_write_unit_max == 0) GTEST_SKIP() << "SKIPPED LOUDLY: this kernel's XFS reports no atomic write unit (needs Linux 6.16+)";
  std::printf("[ xfs      ] statx atomic write unit min %u max %u\n", s.atomic_write_unit_min, s.atomic_write_unit_max);
  EXPECT_TRUE(dev->supports_atomic_write(65536, 65536));
  EXPECT_FALSE(dev->supports_atomic_write(4096, 65536)) << "RWF_ATOMIC needs natural alignment";

  std::vector<std::byte> data(65536);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 7);
  dev->write_atomic(65536, data);
  std::vector<std::byte> back(65536);
  dev->read(65536, back);
  EXPECT_EQ(back, data);

  AtomicWriterOptions o;
  o.native_atomic_unit = 4096;
  o.mode = JournalMode::never;  // nothing journaled: choices only
  AtomicWriter writer(*dev, nullptr, o);
  EXPECT_EQ(writer.write(131072, data, true, true), AtomicWriter::Method::rwf_atomic);
  dev->read(131072, back);
  EXPECT_EQ(back, data);
}

}  // namespace
}  // namespace untorn
