#include "device/rados_cluster.h"

#include <cerrno>
#include <cstring>

#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {


// For a command line a user pastes: single-quoted unless plain.
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@,") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Owns a rados_t until handed over.
struct ClusterHandle {
  rados_t h = nullptr;
  ~ClusterHandle() {
    if (h) rados_shutdown(h);
  }
};

}  // namespace

std::string ceph_error_text(int ret) {
  const int err = ret < 0 ? -ret : ret;
  if (err == ESHUTDOWN)
    return "this client is blocklisted by the cluster (fenced: another host may have taken the image over)";
  return std::strerror(err);
}

std::shared_ptr<RadosCluster> RadosCluster::connect(const std::string& ceph_conf,
                                                    const std::string& ceph_id,
                                                    const std::string& pool) {
  const std::string id = ceph_id.empty() ? "admin" : ceph_id;
  const std::string client = "client." + id;
  ClusterHandle cluster;
  int r = rados_create2(&cluster.h, "ceph", client.c_str(), 0);
  if (r < 0) throw IoError(-r, "backing.ceph_id: cannot make a Ceph client " + client + ": " + ceph_error_text(r));
  r = rados_conf_read_file(cluster.h, ceph_conf.empty() ? nullptr : ceph_conf.c_str());
  if (r < 0)
    throw IoError(-r, ceph_conf.empty()
                          ? "backing.ceph_conf: no ceph.conf found where librados looks "
                            "(/etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf): give one"
                          : "backing.ceph_conf: " + ceph_conf + ": cannot read it: " + ceph_error_text(r));
  // A write that returns must be on the OSDs: no librbd cache acknowledging early.
  rados_conf_set(cluster.h, "rbd_cache", "false");
  // Fail a start against an unreachable cluster in 30 s, not librados' 300.
  rados_conf_set(cluster.h, "client_mount_timeout", "30");
  r = rados_connect(cluster.h);
  if (r < 0)
    throw IoError(-r, "backing.ceph_conf: cannot connect to the Ceph cluster " +
                          (ceph_conf.empty() ? std::string("librados found") : ceph_conf + " names") +
                          " as " + client + " (backing.ceph_id): " + ceph_error_text(r));
  rados_ioctx_t ioctx = nullptr;
  r = rados_ioctx_create(cluster.h, pool.c_str(), &ioctx);
  if (r < 0)
    throw IoError(-r, "backing.rbd: pool '" + pool + "': " +
                          (r == -ENOENT ? std::string("no such pool in the cluster") : ceph_error_text(r)));
  log_debug("connected to the Ceph cluster as " + client + ", pool " + pool);
  try {
    auto out = std::make_shared<RadosCluster>(MadeBy{}, cluster.h, ioctx, pool, client, ceph_conf);
    cluster.h = nullptr;  // now the RadosCluster's
    return out;
  } catch (...) {
    rados_ioctx_destroy(ioctx);
    throw;
  }
}

std::string RadosCluster::cli_options() const {
  return (conf_.empty() ? std::string() : "--conf " + shell_word(conf_) + " ") + "--name " + shell_word(client_);
}

RadosCluster::~RadosCluster() {
  rados_ioctx_destroy(ioctx_);
  rados_shutdown(cluster_);
}

}  // namespace untorn
