/* libasyncprobe-preload-blocking.so: interposes the blocking libc calls for
 * `asyncprobe run --blocking`. Loaded after libasyncprobe-preload.so in LD_PRELOAD, only when
 * asked for, so programs run without --blocking pay nothing. Each wrapper times the real call
 * (found with dlsym(RTLD_NEXT); dlvsym for the versioned condition variables) and hands calls
 * longer than the threshold to asyncprobe_blocking_note() in the main library, which keeps them
 * only when a coroutine is running on the thread. An uncontended mutex is taken with trylock
 * first and never timed. Written in C: C++ redeclarations of libc functions would clash with the
 * headers' exception specifications. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef void (*note_fn)(const char*, uint64_t, uint64_t, uint64_t);
typedef uint64_t (*threshold_fn)(void);
typedef int (*internal_fn)(void);

static note_fn g_note;
static threshold_fn g_threshold;
static internal_fn g_internal;

static void resolve_core(void) {
  if (g_note != NULL) return;
  g_threshold = (threshold_fn)dlsym(RTLD_DEFAULT, "asyncprobe_blocking_threshold");
  g_internal = (internal_fn)dlsym(RTLD_DEFAULT, "asyncprobe_internal_thread");
  note_fn note = (note_fn)dlsym(RTLD_DEFAULT, "asyncprobe_blocking_note");
  if (g_threshold != NULL && g_internal != NULL) g_note = note;
}

__attribute__((constructor)) static void blocking_init(void) { resolve_core(); }

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The threshold in force for this call, 0 when nothing is recorded. */
static inline uint64_t active_threshold(void) {
  if (g_note == NULL) return 0;
  uint64_t t = g_threshold();
  if (t == 0 || g_internal() != 0) return 0;
  return t;
}

static inline void finish(const char* call, uint64_t t0, uint64_t threshold, void* ret) {
  uint64_t d = now_ns() - t0;
  if (d >= threshold) {
    int saved = errno;
    g_note(call, t0, d, (uint64_t)ret);
    errno = saved;
  }
}

#define REAL(name, type)   \
  static type real_##name; \
  if (real_##name == NULL) real_##name = (type)dlsym(RTLD_NEXT, #name)

/* Wraps `expr` (a call of the real function) with timing. */
#define TIMED(call, rtype, expr)                         \
  do {                                                   \
    uint64_t th_ = active_threshold();                   \
    if (th_ == 0) return expr;                           \
    uint64_t t0_ = now_ns();                             \
    rtype r_ = expr;                                     \
    finish(call, t0_, th_, __builtin_return_address(0)); \
    return r_;                                           \
  } while (0)

typedef int (*mutex_lock_t)(pthread_mutex_t*);
EXPORT int pthread_mutex_lock(pthread_mutex_t* m) {
  REAL(pthread_mutex_lock, mutex_lock_t);
  static mutex_lock_t real_trylock;
  if (real_trylock == NULL) real_trylock = (mutex_lock_t)dlsym(RTLD_NEXT, "pthread_mutex_trylock");
  uint64_t th = active_threshold();
  if (th == 0 || real_trylock == NULL) return real_pthread_mutex_lock(m);
  if (real_trylock(m) == 0) return 0;
  uint64_t t0 = now_ns();
  int r = real_pthread_mutex_lock(m);
  finish("pthread_mutex_lock", t0, th, __builtin_return_address(0));
  return r;
}

typedef int (*cond_wait_t)(pthread_cond_t*, pthread_mutex_t*);
EXPORT int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) {
  static cond_wait_t real;
  if (real == NULL) real = (cond_wait_t)dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
  if (real == NULL) real = (cond_wait_t)dlsym(RTLD_NEXT, "pthread_cond_wait");
  TIMED("pthread_cond_wait", int, real(c, m));
}

typedef int (*cond_timedwait_t)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
EXPORT int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const struct timespec* t) {
  static cond_timedwait_t real;
  if (real == NULL)
    real = (cond_timedwait_t)dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
  if (real == NULL) real = (cond_timedwait_t)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
  TIMED("pthread_cond_timedwait", int, real(c, m, t));
}

typedef int (*nanosleep_t)(const struct timespec*, struct timespec*);
EXPORT int nanosleep(const struct timespec* req, struct timespec* rem) {
  REAL(nanosleep, nanosleep_t);
  TIMED("nanosleep", int, real_nanosleep(req, rem));
}

typedef int (*clock_nanosleep_t)(clockid_t, int, const struct timespec*, struct timespec*);
EXPORT int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req,
                           struct timespec* rem) {
  REAL(clock_nanosleep, clock_nanosleep_t);
  TIMED("clock_nanosleep", int, real_clock_nanosleep(clock, flags, req, rem));
}

typedef int (*usleep_t)(useconds_t);
EXPORT int usleep(useconds_t us) {
  REAL(usleep, usleep_t);
  TIMED("usleep", int, real_usleep(us));
}

typedef unsigned (*sleep_t)(unsigned);
EXPORT unsigned sleep(unsigned s) {
  REAL(sleep, sleep_t);
  TIMED("sleep", unsigned, real_sleep(s));
}

typedef int (*poll_t)(struct pollfd*, nfds_t, int);
EXPORT int poll(struct pollfd* fds, nfds_t n, int timeout) {
  REAL(poll, poll_t);
  TIMED("poll", int, real_poll(fds, n, timeout));
}

typedef int (*ppoll_t)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*);
EXPORT int ppoll(struct pollfd* fds, nfds_t n, const struct timespec* t, const sigset_t* mask) {
  REAL(ppoll, ppoll_t);
  TIMED("ppoll", int, real_ppoll(fds, n, t, mask));
}

typedef int (*select_t)(int, fd_set*, fd_set*, fd_set*, struct timeval*);
EXPORT int select(int n, fd_set* r, fd_set* w, fd_set* e, struct timeval* t) {
  REAL(select, select_t);
  TIMED("select", int, real_select(n, r, w, e, t));
}

typedef int (*epoll_wait_t)(int, struct epoll_event*, int, int);
EXPORT int epoll_wait(int fd, struct epoll_event* ev, int max, int timeout) {
  REAL(epoll_wait, epoll_wait_t);
  TIMED("epoll_wait", int, real_epoll_wait(fd, ev, max, timeout));
}

typedef int (*epoll_pwait_t)(int, struct epoll_event*, int, int, const sigset_t*);
EXPORT int epoll_pwait(int fd, struct epoll_event* ev, int max, int timeout, const sigset_t* mask) {
  REAL(epoll_pwait, epoll_pwait_t);
  TIMED("epoll_pwait", int, real_epoll_pwait(fd, ev, max, timeout, mask));
}

typedef ssize_t (*read_t)(int, void*, size_t);
EXPORT ssize_t read(int fd, void* buf, size_t n) {
  REAL(read, read_t);
  TIMED("read", ssize_t, real_read(fd, buf, n));
}

typedef ssize_t (*write_t)(int, const void*, size_t);
EXPORT ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write, write_t);
  TIMED("write", ssize_t, real_write(fd, buf, n));
}

typedef ssize_t (*recv_t)(int, void*, size_t, int);
EXPORT ssize_t recv(int fd, void* buf, size_t n, int flags) {
  REAL(recv, recv_t);
  TIMED("recv", ssize_t, real_recv(fd, buf, n, flags));
}

typedef ssize_t (*recvfrom_t)(int, void*, size_t, int, struct sockaddr*, socklen_t*);
EXPORT ssize_t recvfrom(int fd, void* buf, size_t n, int flags, struct sockaddr* a, socklen_t* l) {
  REAL(recvfrom, recvfrom_t);
  TIMED("recvfrom", ssize_t, real_recvfrom(fd, buf, n, flags, a, l));
}

typedef ssize_t (*send_t)(int, const void*, size_t, int);
EXPORT ssize_t send(int fd, const void* buf, size_t n, int flags) {
  REAL(send, send_t);
  TIMED("send", ssize_t, real_send(fd, buf, n, flags));
}

typedef ssize_t (*sendto_t)(int, const void*, size_t, int, const struct sockaddr*, socklen_t);
EXPORT ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* a,
                      socklen_t l) {
  REAL(sendto, sendto_t);
  TIMED("sendto", ssize_t, real_sendto(fd, buf, n, flags, a, l));
}

typedef int (*accept_t)(int, struct sockaddr*, socklen_t*);
EXPORT int accept(int fd, struct sockaddr* a, socklen_t* l) {
  REAL(accept, accept_t);
  TIMED("accept", int, real_accept(fd, a, l));
}

typedef int (*accept4_t)(int, struct sockaddr*, socklen_t*, int);
EXPORT int accept4(int fd, struct sockaddr* a, socklen_t* l, int flags) {
  REAL(accept4, accept4_t);
  TIMED("accept4", int, real_accept4(fd, a, l, flags));
}

typedef int (*connect_t)(int, const struct sockaddr*, socklen_t);
EXPORT int connect(int fd, const struct sockaddr* a, socklen_t l) {
  REAL(connect, connect_t);
  TIMED("connect", int, real_connect(fd, a, l));
}
