// qemu_probe — asks a QEMU binary which properties its nvme-ns device has.
//
// Owns nothing but one child process per call, reaped before it returns. The answer
// decides whether untorn-config may print QEMU 11's per-namespace atomic options
// (atomic.nawun/nawupf, which Linux 7.x guests require) besides the controller-level
// ones (atomic.awun/awupf, which Linux 6.x guests read).
#pragma once

#include <string>

namespace untorn::tools {

struct NvmeNamespaceProbe {
  bool ran = false;                 // QEMU ran and listed nvme-ns properties
  bool per_namespace_atomic = false;  // it has atomic.nawupf (QEMU 11 and later)
  std::string error;                // why it did not run, when !ran
};

// Runs `qemu -device nvme-ns,help` (stdin /dev/null, stderr discarded, no shell).
NvmeNamespaceProbe probe_nvme_namespace(const std::string& qemu);

}  // namespace untorn::tools
