// Boost.Asio's pump: where an Asio coroutine's work runs after the coroutine suspended.
//
// Boost 1.81 (boost/asio/impl/awaitable.hpp): an awaitable_thread "pumps" its stack of
// awaitable_frames, `awaitable_thread::pump()` calling `awaitable_frame_base::resume()` on the
// top frame, which resumes the coroutine and, once it has suspended, calls the function the
// coroutine left in its resume_context (`after_suspend`). use_awaitable's initiate and every
// `co_await` of an async operation start the operation there: the send/recv work of an echo
// runs in pump() with no resume function on the thread's stack. The coroutine it runs for is the
// top of the frame stack: the innermost of the suspended frames the pump's stack words point at
// (its promise `this`, the after_suspend argument inside its frame), whose `caller_` chain holds
// the others. This file is the one place that names those functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace asyncprobe::profile {

// True for the (possibly inlined) functions of Asio's pump: awaitable_thread<...>::pump() and
// awaitable_frame_base<...>::resume(), as DWARF names them (demangled, template arguments
// included).
bool is_asio_pump(std::string_view function);

// Where the pump keeps the after_suspend argument: the stack slot (offset from its sp at the
// call) that the instructions right before the call to after_suspend_fn_ load into rdi,
// `mov disp(%rsp),%rdi; call *%reg` as g++ 12 and clang 14/19 emit resume()'s last lines.
// `code` holds the n bytes that end at the call's return address. nullopt for any other code.
std::optional<uint32_t> after_suspend_arg_slot(const uint8_t* code, size_t n);

}  // namespace asyncprobe::profile
