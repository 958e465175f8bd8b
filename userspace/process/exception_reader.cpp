#include "userspace/process/exception_reader.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "symbolizer/demangle.h"

namespace asyncprobe::process {

namespace {

// x86-64 (libstdc++ and libc++abi): the exception header (128 bytes, 16-aligned) ends where the
// object starts; __cxa_exception::exceptionType is its first field after the padded reference
// count.
constexpr uint64_t kExceptionTypeBeforeObject = 112;
constexpr uint64_t kTypeInfoName = 8;        // std::type_info: vptr, const char* __name
constexpr uint64_t kSiBaseType = 16;         // __si_class_type_info: ..., __base_type
constexpr uint64_t kVtableTypeInfo = 8;      // a vtable's type_info* sits just before the vptr
constexpr uint64_t kCowRepBeforeChars = 24;  // _Rep {length, capacity, refcount} before chars
constexpr uint64_t kMaxCowCapacity = uint64_t{1} << 32;

constexpr std::string_view kSiClassTypeInfo = "N10__cxxabiv120__si_class_type_infoE";
constexpr std::string_view kRuntimeError = "St13runtime_error";
constexpr std::string_view kLogicError = "St11logic_error";

bool read_u64(const ReadMemory& read, uint64_t addr, uint64_t* out) {
  return addr != 0 && read(addr, out, sizeof *out);
}

// Reads [addr, addr + len) in pieces that never cross a page, so a string ending just before an
// unmapped page is still read.
bool read_bytes(const ReadMemory& read, uint64_t addr, char* out, size_t len) {
  while (len > 0) {
    size_t piece = std::min<size_t>(len, 4096 - addr % 4096);
    if (!read(addr, out, piece)) return false;
    addr += piece;
    out += piece;
    len -= piece;
  }
  return true;
}

// A NUL-terminated mangled name at `addr`: identifier characters only, at most `max` bytes.
bool read_mangled_name(const ReadMemory& read, uint64_t addr, size_t max, std::string* out) {
  out->clear();
  char chunk[64];
  while (out->size() < max) {
    size_t want = std::min<size_t>({sizeof chunk, 4096 - addr % 4096, max - out->size()});
    if (!read(addr, chunk, want)) return false;
    for (size_t i = 0; i < want; ++i) {
      const char c = chunk[i];
      if (c == '\0') return !out->empty();
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '$' || c == '.' || (c == '*' && out->empty());
      if (!ok) return false;
      if (c != '*') *out += c;  // type_info::name() skips a leading '*' (local types)
    }
    addr += want;
  }
  return false;
}

bool type_name(const ReadMemory& read, uint64_t type_info, const ExceptionReadLimits& limits,
               std::string* out) {
  uint64_t name_ptr = 0;
  return read_u64(read, type_info + kTypeInfoName, &name_ptr) &&
         read_mangled_name(read, name_ptr, limits.max_type_name, out);
}

// Walks single-inheritance base classes (__si_class_type_info) from `type_info`: true when
// std::runtime_error or std::logic_error is among them (or is the type itself).
bool derives_from_std_error(const ReadMemory& read, uint64_t type_info, std::string name,
                            const ExceptionReadLimits& limits) {
  for (size_t depth = 0; depth <= limits.max_base_depth; ++depth) {
    if (name == kRuntimeError || name == kLogicError) return true;
    // What kind of type_info this is: the type_info of its own dynamic class, through its vtable.
    uint64_t vptr = 0, meta = 0, base = 0;
    std::string meta_name;
    if (!read_u64(read, type_info, &vptr) || vptr < kVtableTypeInfo ||
        !read_u64(read, vptr - kVtableTypeInfo, &meta) ||
        !type_name(read, meta, limits, &meta_name) || meta_name != kSiClassTypeInfo ||
        !read_u64(read, type_info + kSiBaseType, &base) || !type_name(read, base, limits, &name)) {
      return false;
    }
    type_info = base;
  }
  return false;
}

// libstdc++'s logic_error/runtime_error: vptr, then a COW string (a pointer to the characters).
void read_message(const ReadMemory& read, uint64_t object, const ExceptionReadLimits& limits,
                  model::HeldException* out) {
  uint64_t chars = 0, rep[2] = {};
  if (!read_u64(read, object + 8, &chars) || chars < kCowRepBeforeChars ||
      !read(chars - kCowRepBeforeChars, rep, sizeof rep)) {
    out->error = "message unreadable";
    return;
  }
  const uint64_t length = rep[0], capacity = rep[1];
  if (length > capacity || capacity > kMaxCowCapacity) {
    out->error = "message length implausible (" + std::to_string(length) + ")";
    return;
  }
  const size_t shown = static_cast<size_t>(std::min<uint64_t>(length, limits.max_message));
  std::string text(shown + 1, '\0');
  // Read the terminating NUL too when the whole string is shown: one more check of the length.
  const size_t want = shown == length ? shown + 1 : shown;
  if (!read_bytes(read, chars, text.data(), want) || (want == shown + 1 && text[shown] != '\0')) {
    out->error = "message unreadable";
    return;
  }
  text.resize(shown);
  out->what = std::move(text);
  out->has_what = true;
  out->what_truncated = shown < length;
}

}  // namespace

model::HeldException read_held_exception(uint64_t object, const ReadMemory& read,
                                         const ExceptionReadLimits& limits) {
  model::HeldException ex;
  ex.object = object;
  uint64_t type_info = 0;
  std::string mangled;
  if (object < kExceptionTypeBeforeObject ||
      !read_u64(read, object - kExceptionTypeBeforeObject, &type_info) ||
      !type_name(read, type_info, limits, &mangled)) {
    ex.error = "exception type unreadable (not a C++ runtime exception header)";
    return ex;
  }
  ex.type = symbolizer::demangle_type(mangled);
  if (derives_from_std_error(read, type_info, mangled, limits))
    read_message(read, object, limits, &ex);
  return ex;
}

}  // namespace asyncprobe::process
