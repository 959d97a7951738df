// nbdkit_args_say_readonly: nbdkit's command line read as its getopt_long reads it.
#include "plugin/nbdkit_argv.h"

#include <gtest/gtest.h>

namespace untorn {
namespace {

bool ro(std::vector<std::string> args) {
  args.insert(args.begin(), "nbdkit");
  return nbdkit_args_say_readonly(args);
}

TEST(NbdkitArgvTest, FindsEverySpellingOfReadOnly) {
  EXPECT_TRUE(ro({"-r", "untorn", "backing.path=x"}));
  EXPECT_TRUE(ro({"--readonly", "untorn"}));
  EXPECT_TRUE(ro({"--read-only", "untorn"}));
  EXPECT_TRUE(ro({"--read", "untorn"}));           // an unambiguous prefix
  EXPECT_TRUE(ro({"-fvr", "untorn"}));             // in a bundle
  EXPECT_TRUE(ro({"untorn", "backing.path=x", "-r"}));  // getopt permutes: after the plugin
  EXPECT_TRUE(ro({"-U", "-", "-r", "untorn"}));
}

TEST(NbdkitArgvTest, IgnoresAnRThatIsAnArgumentOrAfterDoubleDash) {
  EXPECT_FALSE(ro({"untorn", "backing.path=x"}));
  EXPECT_FALSE(ro({"-tr", "untorn"}));                 // threads = "r"
  EXPECT_FALSE(ro({"-D", "-r", "untorn"}));            // hypothetical, but -D takes the next word
  EXPECT_FALSE(ro({"--filter", "-r", "untorn"}));
  EXPECT_FALSE(ro({"--log=stderr", "--run", "nbdinfo -r", "untorn"}));
  EXPECT_FALSE(ro({"--r", "untorn"}));                 // ambiguous: --run or --readonly
  EXPECT_FALSE(ro({"--", "untorn", "-r"}));
  EXPECT_FALSE(ro({"untorn", "stats.file=-r"}));
}

}  // namespace
}  // namespace untorn
