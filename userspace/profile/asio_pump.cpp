#include "userspace/profile/asio_pump.h"

namespace asyncprobe::profile {

namespace {

// `function` is `<class_prefix><template arguments>><member>`: the class template named by
// the prefix, its arguments balanced, then exactly the member.
bool is_member_of(std::string_view function, std::string_view class_prefix,
                  std::string_view member) {
  if (!function.starts_with(class_prefix) || !function.ends_with(member)) return false;
  int depth = 1;  // the prefix ends with '<'
  size_t i = class_prefix.size();
  for (; i < function.size() && depth > 0; ++i) {
    if (function[i] == '<') ++depth;
    if (function[i] == '>') --depth;
  }
  return depth == 0 && function.substr(i) == member;
}

}  // namespace

bool is_asio_pump(std::string_view function) {
  return is_member_of(function, "boost::asio::detail::awaitable_thread<", "::pump()") ||
         is_member_of(function, "boost::asio::detail::awaitable_frame_base<", "::resume()");
}

std::optional<uint32_t> after_suspend_arg_slot(const uint8_t* code, size_t n) {
  // call *%reg: FF D0+r, with a REX.B prefix (41) for r8..r15.
  size_t call = 0;
  if (n >= 2 && code[n - 2] == 0xff && (code[n - 1] & 0xf8) == 0xd0) call = 2;
  if (n >= 3 && code[n - 3] == 0x41 && code[n - 2] == 0xff && (code[n - 1] & 0xf8) == 0xd0) {
    call = 3;
  }
  if (call == 0) return std::nullopt;
  const uint8_t* end = code + n - call;
  const size_t left = n - call;
  // mov disp8(%rsp),%rdi: 48 8B 7C 24 d8;  mov disp32(%rsp),%rdi: 48 8B BC 24 d32.
  if (left >= 5 && end[-5] == 0x48 && end[-4] == 0x8b && end[-3] == 0x7c && end[-2] == 0x24) {
    return end[-1];
  }
  if (left >= 8 && end[-8] == 0x48 && end[-7] == 0x8b && end[-6] == 0xbc && end[-5] == 0x24) {
    return static_cast<uint32_t>(end[-4]) | static_cast<uint32_t>(end[-3]) << 8 |
           static_cast<uint32_t>(end[-2]) << 16 | static_cast<uint32_t>(end[-1]) << 24;
  }
  return std::nullopt;
}

}  // namespace asyncprobe::profile
