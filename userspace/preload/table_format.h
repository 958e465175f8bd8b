// The coroutine tables the helper (asyncprobe-preload-helper) computes outside the target and
// the preload library keeps in read-only memory for its crash handler, blocking-call records and
// reports. One blob per module, little-endian, all addresses module-relative (object vaddr; add
// the load bias), all strings offsets into the blob's string pool (NUL-terminated).
//
//   TableHeader
//   CoroRecord[coroutines]     sorted by resume
//   PointRecord[points]        each coroutine's suspend points, contiguous, sorted by index
//   DestroyKey[destroy_keys]   (destroy or cleanup address, coroutine index), sorted by address
//   SymbolRecord[symbols]      function symbols, sorted by start
//   LineRecord[lines]          line-table rows, sorted by address
//   char strings[string_bytes]
#pragma once

#include <cstddef>
#include <cstdint>

namespace asyncprobe::preload_table {

inline constexpr uint32_t kMagic = 0x42545041;  // "APTB"
inline constexpr uint32_t kVersion = 1;

enum TableFlags : uint32_t {
  kHasSymbols = 1,    // a symbol table was found (in the object or its debug file)
  kHasDwarf = 2,      // DWARF was found: suspend points and lines can be placed
  kUnreadable = 4,    // the helper could not open the object: everything else is empty
  kPointsPlaced = 8,  // suspend points computed (a first, quick blob comes without them)
};

struct TableHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t module_id;  // the library's id for the module (echoed from the request)
  uint32_t flags;
  uint64_t total_bytes;  // the whole blob, header included
  uint32_t coroutines;
  uint32_t points;
  uint32_t destroy_keys;
  uint32_t symbols;
  uint32_t lines;
  uint32_t string_bytes;
  uint32_t reserved[2];
};

struct CoroRecord {
  uint64_t resume;  // .actor / .resume entry
  uint64_t resume_size;
  uint64_t cold;  // GCC's <actor>.cold part, 0 if none
  uint64_t cold_size;
  uint64_t destroy;
  uint64_t cleanup;    // Clang .cleanup, 0 if none
  uint32_t name;       // demangled ramp name
  uint32_t decl_file;  // string offset, 0 = unknown (offset 0 is always "")
  uint32_t decl_line;
  uint32_t index_offset;
  uint32_t promise_offset;
  uint32_t points_begin;
  uint32_t points_count;
  uint8_t index_width;  // 0 = unknown
  uint8_t compiler;     // 0 gcc, 1 clang
  uint8_t reserved[2];
};

enum PointKind : uint8_t { kInitial = 0, kAwait = 1, kFinal = 2 };

struct PointRecord {
  int64_t index;
  uint32_t file;  // string offset; 0 when unplaced
  uint32_t line;  // 0 when unplaced
  uint8_t kind;
  uint8_t reserved[7];
};

struct DestroyKey {
  uint64_t address;
  uint32_t coroutine;
  uint32_t is_cleanup;
};

struct SymbolRecord {
  uint64_t start;
  uint64_t size;
  uint32_t name;  // demangled
  uint32_t reserved;
};

struct LineRecord {
  uint64_t address;
  uint32_t file;  // string offset
  uint32_t line;
};

// Byte offsets of each array inside a blob described by `h`; false when the counts do not fit
// in h.total_bytes (a corrupt blob).
struct TableLayout {
  size_t coroutines, points, destroy_keys, symbols, lines, strings, end;
};
inline bool table_layout(const TableHeader& h, TableLayout* out) {
  uint64_t at = sizeof(TableHeader);
  auto take = [&at](uint64_t count, uint64_t size) {
    uint64_t here = at;
    at += count * size;
    return here;
  };
  out->coroutines = take(h.coroutines, sizeof(CoroRecord));
  out->points = take(h.points, sizeof(PointRecord));
  out->destroy_keys = take(h.destroy_keys, sizeof(DestroyKey));
  out->symbols = take(h.symbols, sizeof(SymbolRecord));
  out->lines = take(h.lines, sizeof(LineRecord));
  out->strings = take(h.string_bytes, 1);
  out->end = at;
  return h.magic == kMagic && h.version == kVersion && at == h.total_bytes && h.string_bytes > 0;
}

}  // namespace asyncprobe::preload_table
