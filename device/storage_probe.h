// device/storage_probe.h — what the storage under a file promises, read from the kernel.
//
// Owns nothing; probe_storage() asks statx (STATX_DIOALIGN, STATX_WRITE_ATOMIC) and sysfs
// (the physical block size of the block device holding the file). A field is 0 where the
// kernel or filesystem does not report it; callers decide the fallback and say so.
#pragma once

#include <cstdint>

namespace untorn {

struct StorageInfo {
  uint32_t dio_mem_align = 0;           // statx stx_dio_mem_align (0: not reported)
  uint32_t dio_offset_align = 0;        // statx stx_dio_offset_align
  uint32_t atomic_write_unit_min = 0;   // statx stx_atomic_write_unit_min (0: no RWF_ATOMIC)
  uint32_t atomic_write_unit_max = 0;   // statx stx_atomic_write_unit_max
  uint32_t atomic_write_segments_max = 0;
  uint32_t physical_block_size = 0;     // sysfs queue/physical_block_size of st_dev
  uint32_t logical_block_size = 0;      // sysfs queue/logical_block_size of st_dev
};

// Probes the open file `fd`. Never throws; unknown values stay 0.
StorageInfo probe_storage(int fd);

}  // namespace untorn
