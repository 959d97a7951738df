// device/rados_cluster.h — one connection to a Ceph cluster, with an I/O context on a pool.
//
// Owns the rados_t handle and the rados_ioctx_t for one pool, both released in the
// destructor. Shared (shared_ptr) by the RBD image and the RADOS journal object on that
// pool, which must not outlive it. librados' own cache settings are forced off here:
// `rbd_cache = false`, so a librbd write that returns is on the OSDs (what FLUSH and FUA
// promise), whatever the ceph.conf says. Thread-safe, as librados is.
#pragma once

#include <rados/librados.h>

#include <memory>
#include <string>

namespace untorn {

// A librados/librbd error code (negative or not) in words. Ceph's EBLOCKLISTED is
// ESHUTDOWN, whose strerror ("Cannot send after transport endpoint shutdown") would not
// tell a user that this client has been fenced.
std::string ceph_error_text(int ret);

class RadosCluster {
 public:
  // Reads `ceph_conf` (empty: librados' default search), connects as client.<ceph_id>
  // (empty: admin) and opens `pool`. Throws IoError naming backing.ceph_conf,
  // backing.ceph_id or backing.rbd, whichever the failure points at.
  static std::shared_ptr<RadosCluster> connect(const std::string& ceph_conf,
                                               const std::string& ceph_id, const std::string& pool);
  ~RadosCluster();
  RadosCluster(const RadosCluster&) = delete;
  RadosCluster& operator=(const RadosCluster&) = delete;

  rados_ioctx_t ioctx() const { return ioctx_; }
  const std::string& pool() const { return pool_; }
  // "client.<id>" as connected.
  const std::string& client() const { return client_; }
  // The options that make Ceph's command-line tools (rados, rbd) talk to this cluster as
  // this client: for advice in messages.
  std::string cli_options() const;

 private:
  struct MadeBy {};

 public:
  RadosCluster(MadeBy, rados_t cluster, rados_ioctx_t ioctx, std::string pool, std::string client,
               std::string conf)
      : cluster_(cluster), ioctx_(ioctx), pool_(std::move(pool)), client_(std::move(client)), conf_(std::move(conf)) {}

 private:
  rados_t cluster_;
  rados_ioctx_t ioctx_;
  std::string pool_;
  std::string client_;
  std::string conf_;  // backing.ceph_conf as given ("" = librados' default search)
};

}  // namespace untorn
