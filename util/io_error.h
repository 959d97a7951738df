// util/io_error.h — the error type of the data path.
//
// An IoError carries an errno value (what the NBD client will see) and a message (what the
// server log will show). device/ and cache/ throw it; plugin/ catches it at the nbdkit
// boundary and turns it into nbdkit_error + nbdkit_set_error. Nothing else is thrown on the
// data path except std::bad_alloc, which plugin/ maps to ENOMEM.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace untorn {

class IoError : public std::runtime_error {
 public:
  IoError(int err, const std::string& message) : std::runtime_error(message), err_(err) {}
  int err() const noexcept { return err_; }

  // "what: strerror(err)", the usual shape for a failed system call.
  static IoError from_errno(int err, const std::string& what) {
    return IoError(err, what + ": " + std::strerror(err));
  }

 private:
  int err_;
};

}  // namespace untorn
