// device/journal_format.h — the journal's on-disk format, shared by writer and reader.
// doc/journal_format.md describes the same in prose; keep the two in step.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace untorn::journal {

constexpr uint64_t kHeaderSize = 4096;
constexpr char kHeaderMagic[8] = {'U', 'N', 'T', 'O', 'R', 'N', 'J', '1'};
// Version 2 names the backing file by birth time where version 1 had its device number
// (which a reboot may change); version 1 journals are still read (and replayed).
constexpr uint32_t kVersion = 2;
constexpr uint32_t kRecordMagic = 0x5245434a;
constexpr uint64_t kRecordHeaderSize = 40;

enum class RecordKind : uint32_t { data = 1, zero = 2 };

// What names the backing file across reboots: never its device number (st_dev), which
// LVM, NVMe enumeration order, loop devices or btrfs subvolumes may change.
struct Identity {
  uint64_t backing_size = 0;
  uint64_t inode = 0;
  uint64_t birth_time_ns = 0;  // statx STATX_BTIME; 0 where the filesystem has none
  uint32_t logical_block_size = 0;
  friend bool operator==(const Identity&, const Identity&) = default;
};

struct Header {
  uint64_t epoch = 0;
  Identity identity;
  uint32_t version = kVersion;  // as read: 1 or 2
};

// Whether a journal with header `h` belongs to the backing file `now`. A version 1 header
// holds a device number where birth time now is: only size, inode and L are compared.
bool same_backing_file(const Header& h, const Identity& now);

struct RecordHeader {
  uint64_t epoch;
  uint64_t sequence;
  uint64_t offset;
  uint32_t length;
  RecordKind kind;
  uint64_t payload_size() const { return kind == RecordKind::data ? length : 0; }
};

// Little-endian helpers (x86 and arm64 are little-endian; spelled out for clarity).
inline void put32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t get32(const std::byte* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get64(const std::byte* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

// Serialises a header into exactly kHeaderSize bytes.
void encode_header(const Header& h, std::span<std::byte, kHeaderSize> out);
// False when magic, version or CRC is wrong.
bool decode_header(std::span<const std::byte, kHeaderSize> in, Header& h);

// Writes the 40-byte record header for `r` with the CRC over header rest and `payload`.
void encode_record_header(const RecordHeader& r, std::span<const std::byte> payload,
                          std::span<std::byte, kRecordHeaderSize> out);
// Parses the fixed fields (no CRC check: the payload is needed for that).
bool decode_record_header(std::span<const std::byte, kRecordHeaderSize> in, RecordHeader& r,
                          uint32_t& crc);
// The CRC a record with this header and payload must carry.
uint32_t record_crc(std::span<const std::byte, kRecordHeaderSize> header,
                    std::span<const std::byte> payload);

}  // namespace untorn::journal
