#include "device/journal_format.h"

#include "device/crc32c.h"

namespace untorn::journal {

void encode_header(const Header& h, std::span<std::byte, kHeaderSize> out) {
  std::memset(out.data(), 0, out.size());
  std::memcpy(out.data(), kHeaderMagic, 8);
  put32(out.data() + 8, kVersion);
  put64(out.data() + 16, h.epoch);
  put64(out.data() + 24, h.identity.backing_size);
  put64(out.data() + 32, h.identity.inode);
  put64(out.data() + 40, h.identity.birth_time_ns);
  put32(out.data() + 48, h.identity.logical_block_size);
  put32(out.data() + 12, crc32c(0, out.data(), out.size()));
}

bool decode_header(std::span<const std::byte, kHeaderSize> in, Header& h) {
  const uint32_t version = get32(in.data() + 8);
  if (std::memcmp(in.data(), kHeaderMagic, 8) != 0 || (version != 1 && version != kVersion))
    return false;
  std::byte copy[kHeaderSize];
  std::memcpy(copy, in.data(), kHeaderSize);
  put32(copy + 12, 0);
  if (crc32c(0, copy, kHeaderSize) != get32(in.data() + 12)) return false;
  h.epoch = get64(in.data() + 16);
  h.identity.backing_size = get64(in.data() + 24);
  h.identity.inode = get64(in.data() + 32);
  h.identity.birth_time_ns = version == 1 ? 0 : get64(in.data() + 40);  // v1: st_dev, unused
  h.identity.logical_block_size = get32(in.data() + 48);
  h.version = version;
  return true;
}

bool same_backing_file(const Header& h, const Identity& now) {
  const Identity& was = h.identity;
  return was.backing_size == now.backing_size && was.inode == now.inode &&
         was.logical_block_size == now.logical_block_size &&
         (h.version == 1 || was.birth_time_ns == now.birth_time_ns);
}

uint32_t record_crc(std::span<const std::byte, kRecordHeaderSize> header,
                    std::span<const std::byte> payload) {
  uint32_t crc = crc32c(0, header.data() + 8, kRecordHeaderSize - 8);
  return crc32c(crc, payload.data(), payload.size());
}

void encode_record_header(const RecordHeader& r, std::span<const std::byte> payload,
                          std::span<std::byte, kRecordHeaderSize> out) {
  put32(out.data(), kRecordMagic);
  put64(out.data() + 8, r.epoch);
  put64(out.data() + 16, r.sequence);
  put64(out.data() + 24, r.offset);
  put32(out.data() + 32, r.length);
  put32(out.data() + 36, static_cast<uint32_t>(r.kind));
  put32(out.data() + 4, record_crc(out, payload));
}

bool decode_record_header(std::span<const std::byte, kRecordHeaderSize> in, RecordHeader& r,
                          uint32_t& crc) {
  if (get32(in.data()) != kRecordMagic) return false;
  crc = get32(in.data() + 4);
  r.epoch = get64(in.data() + 8);
  r.sequence = get64(in.data() + 16);
  r.offset = get64(in.data() + 24);
  r.length = get32(in.data() + 32);
  uint32_t kind = get32(in.data() + 36);
  if (kind != 1 && kind != 2) return false;
  r.kind = static_cast<RecordKind>(kind);
  return true;
}

}  // namespace untorn::journal
