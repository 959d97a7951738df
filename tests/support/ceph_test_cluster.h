// tests/support/ceph_test_cluster.h — a throwaway Ceph cluster for one test binary.
//
// Owns: a one-mon, one-osd cluster (scripts/ceph_cluster.sh) in a temp dir with an "rbd"
// pool, memstore (get()) or BlueStore (bluestore(): for tests that kill the osd, which
// memstore does not survive), each started at its first call (so a binary whose RBD tests
// do not run starts none) and stopped by CephEnvironment's TearDown or at exit. up() is false, with why_not(), where the Ceph tools are missing
// (a skip) or the cluster did not start (also a test failure). Environment:
// UNTORN_SOURCE_ROOT (where scripts/ lives, set by meson).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "tests/support/temp_dir.h"

namespace untorn::testing {

// Runs a shell command; returns its exit status and what it printed (stdout and stderr).
struct Ran {
  int status;
  std::string output;
};
inline Ran run(const std::string& command) {
  Ran r{-1, {}};
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  r.status = pclose(p);
  return r;
}

inline std::string source_root() {
  const char* root = std::getenv("UNTORN_SOURCE_ROOT");
  return root ? root : ".";
}

// Under TSan, nbdkit loads Ceph's libraries, which are not instrumented: TSan sees their
// copies through interceptors (memcpy from libstdc++) but none of their synchronisation,
// and reports races inside them (a string librbd's new thread copies at rbd_open).
// ignore_noninstrumented_modules drops interceptor calls from such libraries, for the
// servers started from now on (the RBD ones: the cluster starts at the first RBD test);
// untorn's own code stays instrumented.
inline void use_tsan_options_for_ceph() {
  const char* pre = std::getenv("UNTORN_NBDKIT_PRELOAD");
  if (!pre || std::string(pre).find("libtsan") == std::string::npos) return;
  const char* tsan = std::getenv("TSAN_OPTIONS");
  std::string env = std::getenv("UNTORN_NBDKIT_ENV") ? std::getenv("UNTORN_NBDKIT_ENV") : "";
  if (env.find("ignore_noninstrumented_modules") != std::string::npos) return;  // a second cluster
  env += std::string(env.empty() ? "" : " ") + "TSAN_OPTIONS=" + (tsan ? std::string(tsan) + ":" : "") +
         "ignore_noninstrumented_modules=1";
  setenv("UNTORN_NBDKIT_ENV", env.c_str(), 1);
}

// The cluster, shared by every test of this binary.
class Cluster {
  struct Key {};

 public:
  static Cluster& get() { return started(slot(false), false); }
  static Cluster& bluestore() { return started(slot(true), true); }
  static void stop_if_started() {
    for (bool b : {false, true})
      if (slot(b)) slot(b)->stop();
  }
  bool up() const { return up_; }
  const std::string& why_not() const { return why_not_; }
  const std::string& conf() const { return conf_; }
  std::string rbd(const std::string& args) const { return "timeout 60 rbd --conf " + conf_ + " " + args; }
  std::string rados(const std::string& args) const { return "timeout 60 rados --conf " + conf_ + " " + args; }
  std::string ceph(const std::string& args) const { return "timeout 60 ceph --conf " + conf_ + " " + args; }
  // The osd, killed with SIGKILL (its acknowledged writes are in BlueStore), and started
  // again; each returns the script's outcome.
  Ran kill_osd() const { return run(script_ + " kill-osd " + dir_.file("ceph")); }
  Ran start_osd() const { return run(script_ + " start-osd " + dir_.file("ceph")); }
  void stop() {
    if (!started_) return;
    run(script_ + " stop " + dir_.file("ceph"));
    started_ = false;
  }
  ~Cluster() { stop(); }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

 private:
  static std::unique_ptr<Cluster>& slot(bool bluestore) {
    static std::unique_ptr<Cluster> clusters[2];
    return clusters[bluestore];
  }
  static Cluster& started(std::unique_ptr<Cluster>& slot, bool bluestore) {
    if (!slot) slot = std::make_unique<Cluster>(Key{}, bluestore);
    return *slot;
  }

 public:
  Cluster(Key, bool bluestore) {
    use_tsan_options_for_ceph();
    for (const char* tool : {"ceph-mon", "ceph-osd", "rbd", "rados"}) {
      if (run(std::string("command -v ") + tool).status != 0) {
        why_not_ = std::string(tool) + " is not installed (scripts/deps.sh test installs ceph-mon, ceph-osd, ceph-common)";
        return;
      }
    }
    script_ = source_root() + "/scripts/ceph_cluster.sh";
    started_ = true;
    // --owner: if this test binary dies (a timeout, a crash), the cluster goes with it.
    Ran r = run(script_ + " start " + dir_.file("ceph") + (bluestore ? " --bluestore" : "") + " --owner " +
                std::to_string(getpid()));
    if (r.status != 0) {
      // Installed but not startable is a failure, not a skip.
      ADD_FAILURE() << "scripts/ceph_cluster.sh start failed:\n" << r.output;
      why_not_ = "the cluster did not start";
      return;
    }
    conf_ = dir_.file("ceph/ceph.conf");
    Ran pool = run("timeout 60 ceph --conf " + conf_ + " osd pool create rbd 8 8 && " + rbd("pool init rbd"));
    if (pool.status != 0) {
      ADD_FAILURE() << "cannot make the rbd pool:\n" << pool.output;
      why_not_ = "no rbd pool";
      return;
    }
    up_ = true;
  }

 private:
  TempDir dir_;
  std::string script_;
  std::string conf_;
  bool started_ = false;
  bool up_ = false;
  std::string why_not_;
};

// Register once per binary (AddGlobalTestEnvironment): stops the cluster at the end, if
// a test started it.
class CephEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { Cluster::stop_if_started(); }
};

}  // namespace untorn::testing
