#include "device/backing.h"

#include "conf/units.h"

namespace untorn {

SizePlan plan_backing_size(uint64_t size, const Config::Backing& backing, uint32_t logical_block_size,
                           bool readonly, const std::string& kind) {
  SizePlan plan{size, false, {}};
  if (backing.size != 0 && backing.size != size) {
    const std::string differs =
        "is " + conf::format_size(size) + " but backing.size is " + conf::format_size(backing.size);
    if (readonly) {
      plan.problem = differs + "; a read-only server does not resize it";
      return plan;
    }
    if (!backing.resize) {
      plan.problem = differs + "; set backing.resize=true to resize it, or leave backing.size unset to use the " +
                     kind + "'s size";
      return plan;
    }
    plan.serve = backing.size;
    plan.resize = true;
  }
  if (plan.serve == 0 || plan.serve % logical_block_size != 0)
    plan.problem = "its size " + std::to_string(plan.serve) +
                   " is not a positive multiple of device.logical_block_size (" +
                   std::to_string(logical_block_size) + ")";
  return plan;
}

}  // namespace untorn
