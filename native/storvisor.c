/*
 * storvisor's native addon: what Node lacks for the data plane.
 *
 *   io_uring   a submission/completion ring per engine, driven from the thread
 *              that owns it: prep* fill SQEs (no system call), submit() makes one
 *              io_uring_enter for the batch, reap() copies CQEs into a caller's
 *              Int32Array (a memory read, no system call). An eventfd registered
 *              with the ring is watched by the owning thread's libuv loop, so
 *              when nothing spins, a completion wakes that loop directly: no
 *              thread-pool hop. notify(false) sets IORING_CQ_EVENTFD_DISABLED
 *              while a poller spins, so the kernel skips the eventfd write.
 *   shared     guest regions for process guests: a sealed memfd (huge pages
 *              when asked and available), mapped into an ArrayBuffer; eventfd
 *              doorbells with a libuv watch that calls back into JS.
 *   scheduling sched_yield, thread affinity, thread nice value, gettid; the
 *              same for another thread of this process (by tid), and the
 *              real-time policies where the process is permitted them.
 *   memory     the address alignment of a buffer (O_DIRECT needs 512 bytes).
 *
 * Raw system calls against <linux/io_uring.h>: no liburing needed to build.
 * Nothing here allocates per request; every entry point takes numbers and
 * buffers the caller already holds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

#include "napi-check.h"

typedef struct ring {
  int fd;
  int efd;
  unsigned sq_entries;
  /* Submission queue (shared with the kernel). */
  void *sq_ptr;
  size_t sq_len;
  _Atomic unsigned *sq_head;
  _Atomic unsigned *sq_tail;
  _Atomic unsigned *sq_flags;
  unsigned sq_mask;
  unsigned *sq_array;
  struct io_uring_sqe *sqes;
  size_t sqes_len;
  /* Completion queue (shares sq_ptr's mapping: IORING_FEAT_SINGLE_MMAP). */
  void *cq_ptr;
  size_t cq_len;
  _Atomic unsigned *cq_head;
  _Atomic unsigned *cq_tail;
  unsigned cq_mask;
  _Atomic unsigned *cq_flags;
  struct io_uring_cqe *cqes;
  /* Our shadow of sq_tail: SQEs filled but not yet handed over by submit(). */
  unsigned local_tail;
  unsigned submitted_tail;
  /* The owning loop's epoll descriptor (uv_backend_fd), -1 until watched: is other work waiting? */
  int loop_fd;
  /* libuv watch of the eventfd. */
  uv_poll_t poll;
  int watching;
  int closing;
  /* Owners of this struct: the JS external, and the uv handle while it exists. */
  int refs;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
} ring_t;

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}


static int sys_register(int fd, unsigned opcode, void *arg, unsigned nr) {
  return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr);
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  const char *name = err == ENOSYS ? "ENOSYS" : err == EPERM ? "EPERM" : err == ENOMEM ? "ENOMEM" : err == EINVAL ? "EINVAL" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_throw(env, error);
  return NULL;
}

static void ring_unmap(ring_t *r) {
  if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->cq_ptr && r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr) munmap(r->cq_ptr, r->cq_len);
  if (r->sq_ptr && r->sq_ptr != MAP_FAILED) munmap(r->sq_ptr, r->sq_len);
  r->sqes = NULL;
  r->cq_ptr = r->sq_ptr = NULL;
}

static void ring_release(ring_t *r) {
  ring_unmap(r);
  if (r->efd >= 0) close(r->efd);
  if (r->fd >= 0) close(r->fd);
  r->efd = r->fd = -1;
}

/* ---- argument helpers --------------------------------------------------- */

static ring_t *ring_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "expected a ring");
    return NULL;
  }
  ring_t *r = p;
  if (r->fd < 0) {
    napi_throw_error(env, "ESHUTDOWN", "ring is closed");
    return NULL;
  }
  return r;
}

/*
 * The bytes of a TypedArray or Buffer: base pointer and length; 0 (nothing thrown)
 * when `v` is not one. Shared with native/lz4.c and native/xxhash.c (napi-check.h).
 */
int storvisor_typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  void *ptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok) return 0;
  size_t elem = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: elem = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
    default: elem = 1;
  }
  *data = ptr;
  *len = length * elem;
  return 1;
}

int storvisor_two_buffers(napi_env env, napi_callback_info info, uint8_t **a, size_t *an, uint8_t **b, size_t *bn) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return 0;
  return storvisor_typed_bytes(env, argv[0], a, an) && storvisor_typed_bytes(env, argv[1], b, bn);
}

/* The bytes of a TypedArray or Buffer argument, or a TypeError thrown. */
static int bytes_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  if (storvisor_typed_bytes(env, v, data, len)) return 1;
  napi_throw_type_error(env, NULL, "expected a TypedArray or Buffer");
  return 0;
}

static int64_t i64_arg(napi_env env, napi_value v) {
  int64_t x = 0;
  napi_get_value_int64(env, v, &x);
  return x;
}

/* ---- ring lifecycle ----------------------------------------------------- */

static void ring_unref(ring_t *r) {
  if (--r->refs > 0) return;
  ring_release(r);
  free(r);
}

static void ring_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ring_t *r = data;
  if (r->watching) {
    /* Never closed (the environment is going away): stop the watch; the handle keeps its reference. */
    uv_poll_stop(&r->poll);
    r->watching = 0;
    r->callback = NULL;
  }
  ring_unref(r);
}

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif

/*
 * ringCreate(entries, cqEntries, cooperative = false) → ring. cqEntries should
 * cover the most requests the caller keeps in flight, so completions never
 * overflow the ring. Throws with the errno when io_uring is missing or refused.
 *
 * cooperative (IORING_SETUP_COOP_TASKRUN | TASKRUN_FLAG, where the kernel has
 * them): a completion does not interrupt the owning thread with an
 * inter-processor interrupt while it runs in user space. The kernel sets
 * IORING_SQ_TASKRUN instead, and the thread posts its completions at its next
 * system call (every event-loop pass makes one) or when reap(), ready() or a
 * hold sees the flag (one io_uring_enter). On these virtual machines the disk's
 * interrupt lands on one vCPU and the IPI to the spinning one cost ~4–6 µs per
 * QD1 read in some runs with raw syscalls (36.9 → 31–34.5 µs), nothing in
 * others; the engine leaves it off unless asked (see UringOptions). A thread asleep in
 * epoll_wait is still woken (the task work's signal wakes interruptible
 * sleepers), then posts the completion and its eventfd signal.
 */
static napi_value ring_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t entries = 256, cq_entries = 0;
  bool cooperative = false;
  if (argc > 0) napi_get_value_uint32(env, argv[0], &entries);
  if (argc > 1) napi_get_value_uint32(env, argv[1], &cq_entries);
  if (argc > 2) napi_get_value_bool(env, argv[2], &cooperative);

  ring_t *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, "ringCreate", ENOMEM);
  r->fd = r->efd = r->loop_fd = -1;
  r->refs = 1;
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* Only the owning thread submits: lets the kernel skip some locking. */
  p.flags = IORING_SETUP_SINGLE_ISSUER | (cooperative ? IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG : 0);
  if (cq_entries > entries * 2) {
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
  }
  int fd = sys_setup(entries, &p);
  if (fd < 0 && errno == EINVAL && cooperative) {
    /* an older kernel without cooperative task running (before 5.19) */
    unsigned flags = p.flags & ~(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    memset(&p, 0, sizeof p);
    p.flags = flags;
    p.cq_entries = cq_entries;
    fd = sys_setup(entries, &p);
  }
  if (fd < 0 && errno == EINVAL) {
    /* an older kernel without SINGLE_ISSUER */
    unsigned flags = p.flags & ~IORING_SETUP_SINGLE_ISSUER;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    p.cq_entries = cq_entries;
    fd = sys_setup(entries, &p);
  }
  if (fd < 0) {
    int err = errno;
    free(r);
    return throw_errno(env, "io_uring_setup", err);
  }
  r->fd = fd;
  r->sq_entries = p.sq_entries;
  r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single && r->cq_len > r->sq_len) r->sq_len = r->cq_len;
  r->sq_ptr = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (r->sq_ptr == MAP_FAILED) goto fail;
  r->cq_ptr = single ? r->sq_ptr : mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  if (r->cq_ptr == MAP_FAILED) goto fail;
  r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) goto fail;

  uint8_t *sq = r->sq_ptr, *cq = r->cq_ptr;
  r->sq_head = (_Atomic unsigned *)(sq + p.sq_off.head);
  r->sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
  r->sq_flags = (_Atomic unsigned *)(sq + p.sq_off.flags);
  r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p.sq_off.array);
  r->cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
  r->cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
  r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
  r->cq_flags = p.cq_off.flags ? (_Atomic unsigned *)(cq + p.cq_off.flags) : NULL;
  r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  r->local_tail = r->submitted_tail = atomic_load_explicit(r->sq_tail, memory_order_relaxed);

  /* The wake-up path for a loop that is not spinning. */
  r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->efd < 0) goto fail;
  if (sys_register(fd, IORING_REGISTER_EVENTFD, &r->efd, 1) < 0) goto fail;

  napi_value ext;
  if (napi_create_external(env, r, ring_finalize, NULL, &ext) != napi_ok) {
    ring_release(r);
    free(r);
    napi_throw_error(env, NULL, "napi_create_external failed");
    return NULL;
  }
  return ext;

fail: {
  int err = errno;
  ring_release(r);
  free(r);
  return throw_errno(env, "io_uring setup", err);
}
}

/* ---- submission --------------------------------------------------------- */

/* The next free SQE, or NULL when the submission queue is full. */
static struct io_uring_sqe *next_sqe(ring_t *r) {
  unsigned head = atomic_load_explicit(r->sq_head, memory_order_acquire);
  if (r->local_tail - head >= r->sq_entries) return NULL;
  unsigned idx = r->local_tail & r->sq_mask;
  struct io_uring_sqe *sqe = &r->sqes[idx];
  memset(sqe, 0, sizeof *sqe);
  r->sq_array[idx] = idx;
  r->local_tail++;
  return sqe;
}

/*
 * prepRw(ring, op, fd, buffer, byteOffset, length, position, tag, rwFlags) → bool
 * op: 0 read, 1 write. False when the submission queue is full (call submit()).
 * The buffer must stay alive and untouched until the completion is reaped.
 */
static napi_value prep_rw(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) {
    napi_throw_type_error(env, NULL, "prepRw needs 9 arguments");
    return NULL;
  }
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  uint32_t op = 0, tag = 0, rw_flags = 0;
  int32_t fd = -1;
  napi_get_value_uint32(env, argv[1], &op);
  napi_get_value_int32(env, argv[2], &fd);
  uint8_t *data;
  size_t len;
  if (!bytes_arg(env, argv[3], &data, &len)) return NULL;
  int64_t at = i64_arg(env, argv[4]);
  int64_t count = i64_arg(env, argv[5]);
  int64_t pos = i64_arg(env, argv[6]);
  napi_get_value_uint32(env, argv[7], &tag);
  napi_get_value_uint32(env, argv[8], &rw_flags);
  if (at < 0 || count < 0 || (uint64_t)at + (uint64_t)count > len || count > 0x7fffffff || pos < 0) {
    napi_throw_range_error(env, "ERANGE", "prepRw: range outside the buffer");
    return NULL;
  }
  napi_value result;
  struct io_uring_sqe *sqe = next_sqe(r);
  if (!sqe) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  sqe->opcode = op == 1 ? IORING_OP_WRITE : IORING_OP_READ;
  sqe->fd = fd;
  sqe->addr = (uint64_t)(uintptr_t)(data + at);
  sqe->len = (uint32_t)count;
  sqe->off = (uint64_t)pos;
  sqe->rw_flags = (int)rw_flags;
  sqe->user_data = tag;
  napi_get_boolean(env, true, &result);
  return result;
}

/* prepFsync(ring, fd, tag, datasync) → bool */
static napi_value prep_fsync(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  int32_t fd = -1;
  uint32_t tag = 0;
  bool datasync = true;
  napi_get_value_int32(env, argv[1], &fd);
  napi_get_value_uint32(env, argv[2], &tag);
  if (argc > 3) napi_get_value_bool(env, argv[3], &datasync);
  napi_value result;
  struct io_uring_sqe *sqe = next_sqe(r);
  if (!sqe) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  sqe->opcode = IORING_OP_FSYNC;
  sqe->fd = fd;
  sqe->fsync_flags = datasync ? IORING_FSYNC_DATASYNC : 0;
  sqe->user_data = tag;
  napi_get_boolean(env, true, &result);
  return result;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* submit(ring) → number handed to the kernel (0 when nothing was prepared), or -errno. */
static napi_value ring_submit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  /* Tracing only: a Float64Array that receives CLOCK_MONOTONIC ns around the system call. */
  double *times = NULL;
  if (argc > 1) {
    uint8_t *tdata;
    size_t tlen;
    if (storvisor_typed_bytes(env, argv[1], &tdata, &tlen) && tlen >= 2 * sizeof(double)) times = (double *)tdata;
  }
  unsigned pending = r->local_tail - r->submitted_tail;
  int ret = 0;
  if (pending > 0) {
    /* Release: the SQE contents are visible before the kernel sees the tail. */
    atomic_store_explicit(r->sq_tail, r->local_tail, memory_order_release);
    r->submitted_tail = r->local_tail;
    if (times) times[0] = (double)now_ns();
    do {
      ret = sys_enter(r->fd, pending, 0, 0);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) ret = -errno;
    if (times) times[1] = (double)now_ns();
  }
  napi_value result;
  napi_create_int32(env, ret, &result);
  return result;
}

/*
 * Cooperative rings (see ringCreate): completions wait as task work until this
 * thread enters the kernel. When the kernel flagged some, post them now (one
 * io_uring_enter); a memory read otherwise.
 */
static inline void run_task_work(ring_t *r) {
  if (atomic_load_explicit(r->sq_flags, memory_order_relaxed) & IORING_SQ_TASKRUN) {
    sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS);
  }
}

/* Whether the owning event loop has I/O waiting (its epoll descriptor is readable): one poll(2), no wait. */
static int loop_has_work(ring_t *r) {
  if (r->loop_fd < 0) return 0;
  struct pollfd p = { .fd = r->loop_fd, .events = POLLIN, .revents = 0 };
  return poll(&p, 1, 0) > 0;
}


static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* How often a hold looks at the event loop's descriptor (one poll(2) each time). */
#define HOLD_LOOP_CHECK_NS 10000u

/*
 * hold(ring, minComplete, timeoutNs) → 0: minComplete completions are ready;
 * 1: the timeout passed; 2: the event loop has I/O waiting (before or during
 * the hold); -errno: the submission failed.
 * Submits what was prepared, then busy-polls the completion ring in C until
 * minComplete completions are ready, timeoutNs has passed, or the event loop
 * has I/O waiting (checked every HOLD_LOOP_CHECK_NS: another client must not
 * queue behind this request). On these virtual machines a sleeping thread's
 * wake-up costs about a third of a fast disk's read, so for a lone request a
 * short, bounded spin in the submitting thread beats sleeping in the kernel,
 * the eventfd and the event loop's pass alike. The completion is posted by
 * the kernel's task work, which interrupts this spinning thread. The eventfd
 * stays quiet meanwhile; the caller reaps.
 * An optional 4th argument, a Float64Array of at least 2 (tracing only),
 * receives CLOCK_MONOTONIC ns of the spin's start and of the moment it saw
 * the completion (NaN when it did not).
 */
static napi_value ring_hold(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double *times = NULL;
  if (argc > 3) {
    uint8_t *tdata;
    size_t tlen;
    if (storvisor_typed_bytes(env, argv[3], &tdata, &tlen) && tlen >= 2 * sizeof(double)) {
      times = (double *)tdata;
      times[0] = times[1] = NAN;
    }
  }
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  uint32_t min_complete = 1;
  int64_t timeout_ns = 0;
  if (argc > 1) napi_get_value_uint32(env, argv[1], &min_complete);
  if (argc > 2) timeout_ns = i64_arg(env, argv[2]);
  unsigned pending = r->local_tail - r->submitted_tail;
  int ret = 0;
  if (pending > 0) {
    /* Release: the SQE contents are visible before the kernel sees the tail. */
    atomic_store_explicit(r->sq_tail, r->local_tail, memory_order_release);
    r->submitted_tail = r->local_tail;
    do {
      ret = sys_enter(r->fd, pending, 0, 0);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) ret = -errno;
  }
  if (ret < 0) goto out;
  ret = 1;
  if (timeout_ns <= 0 || min_complete == 0) goto out;
  if (loop_has_work(r)) {
    ret = 2;
    goto out;
  }
  {
    unsigned quiet = 0;
    if (r->cq_flags) {
      quiet = !(atomic_load_explicit(r->cq_flags, memory_order_relaxed) & IORING_CQ_EVENTFD_DISABLED);
      if (quiet) atomic_fetch_or_explicit(r->cq_flags, IORING_CQ_EVENTFD_DISABLED, memory_order_seq_cst);
    }
    uint64_t start = now_ns(), deadline = start + (uint64_t)timeout_ns, next_check = start + HOLD_LOOP_CHECK_NS;
    if (times) times[0] = (double)start;
    for (;;) {
      run_task_work(r);
      unsigned head = atomic_load_explicit(r->cq_head, memory_order_relaxed);
      unsigned tail = atomic_load_explicit(r->cq_tail, memory_order_acquire);
      if (tail - head >= min_complete || (atomic_load_explicit(r->sq_flags, memory_order_relaxed) & IORING_SQ_CQ_OVERFLOW)) {
        if (times) times[1] = (double)now_ns();
        ret = 0;
        break;
      }
      cpu_relax();
      uint64_t t = now_ns();
      if (t >= deadline) break;
      if (t >= next_check) {
        if (loop_has_work(r)) {
          ret = 2;
          break;
        }
        next_check = t + HOLD_LOOP_CHECK_NS;
      }
    }
    if (quiet) atomic_fetch_and_explicit(r->cq_flags, ~IORING_CQ_EVENTFD_DISABLED, memory_order_seq_cst);
  }
out:;
  napi_value result;
  napi_create_int32(env, ret, &result);
  return result;
}

/* ---- completion --------------------------------------------------------- */


static unsigned reap_into(ring_t *r, int32_t *out, unsigned pairs) {
  unsigned head = atomic_load_explicit(r->cq_head, memory_order_relaxed);
  /* Acquire: CQE contents written by the kernel are visible once we see its tail. */
  unsigned tail = atomic_load_explicit(r->cq_tail, memory_order_acquire);
  unsigned n = 0;
  while (head != tail && n < pairs) {
    struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
    out[2 * n] = (int32_t)(uint32_t)cqe->user_data;
    out[2 * n + 1] = cqe->res;
    head++;
    n++;
  }
  /* Release: the kernel may reuse the slots only after we have read them. */
  if (n) atomic_store_explicit(r->cq_head, head, memory_order_release);
  return n;
}

/* reap(ring, out: Int32Array) → n; out[2i] = tag, out[2i+1] = result (bytes or -errno). */
static napi_value ring_reap(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  uint8_t *data;
  size_t len;
  if (!bytes_arg(env, argv[1], &data, &len)) return NULL;
  unsigned pairs = (unsigned)(len / 8);
  run_task_work(r);
  unsigned n = reap_into(r, (int32_t *)data, pairs);
  if (n < pairs && (atomic_load_explicit(r->sq_flags, memory_order_relaxed) & IORING_SQ_CQ_OVERFLOW)) {
    /* Completions the ring had no room for wait in the kernel: bring them in. */
    sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS);
    n += reap_into(r, (int32_t *)data + 2 * n, pairs - n);
  }
  napi_value result;
  napi_create_uint32(env, n, &result);
  return result;
}

/* pending(ring) → CQEs waiting to be reaped (a cheap emptiness test for a poller). */
static napi_value ring_ready(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  run_task_work(r);
  unsigned head = atomic_load_explicit(r->cq_head, memory_order_relaxed);
  unsigned tail = atomic_load_explicit(r->cq_tail, memory_order_acquire);
  napi_value result;
  napi_create_uint32(env, tail - head, &result);
  return result;
}

/*
 * notify(ring, on): whether the kernel signals the eventfd on completion.
 * A spinning poller turns it off (it reaps by reading memory); before it
 * sleeps it turns it on and re-checks the ring, so no completion is missed.
 */
static napi_value ring_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  bool on = true;
  napi_get_value_bool(env, argv[1], &on);
  if (r->cq_flags) {
    if (on) atomic_fetch_and_explicit(r->cq_flags, ~IORING_CQ_EVENTFD_DISABLED, memory_order_seq_cst);
    else atomic_fetch_or_explicit(r->cq_flags, IORING_CQ_EVENTFD_DISABLED, memory_order_seq_cst);
  }
  return NULL;
}

static void on_eventfd(uv_poll_t *handle, int status, int events) {
  (void)events;
  ring_t *r = handle->data;
  uint64_t value;
  /* Drain the counter: one wake-up covers every completion so far. */
  while (read(r->efd, &value, sizeof value) > 0) {
  }
  if (status < 0 || r->callback == NULL) return;
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, ignored;
  if (napi_get_reference_value(env, r->callback, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv); /* Node 20's make_callback wants an object receiver */
    /* make_callback runs the microtask queue afterwards, as any libuv callback into JS must. */
    napi_make_callback(env, r->async, recv, cb, 0, NULL, &ignored);
  }
  napi_close_handle_scope(env, scope);
}

/* watch(ring, callback): call back (no arguments) on the owning loop whenever completions were signalled. */
static napi_value ring_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  if (r->watching) {
    napi_throw_error(env, NULL, "ring is already watched");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  r->env = env;
  CHECK(env, napi_create_reference(env, argv[1], 1, &r->callback));
  napi_value name, resource;
  napi_create_string_utf8(env, "storvisor:io_uring", NAPI_AUTO_LENGTH, &name);
  /* Node 20 requires a resource object (NULL is accepted only by later versions). */
  CHECK(env, napi_create_object(env, &resource));
  CHECK(env, napi_async_init(env, resource, name, &r->async));
  if (uv_poll_init(loop, &r->poll, r->efd) != 0) {
    napi_throw_error(env, NULL, "uv_poll_init failed");
    return NULL;
  }
  r->poll.data = r;
  r->refs++;
  r->loop_fd = uv_backend_fd(loop);
  uv_poll_start(&r->poll, UV_READABLE, on_eventfd);
  r->watching = 1;
  return NULL;
}

/* ref(ring, on): whether the watch keeps the event loop alive (on while requests are in flight). */
static napi_value ring_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = ring_arg(env, argv[0]);
  if (!r) return NULL;
  bool on = true;
  napi_get_value_bool(env, argv[1], &on);
  if (r->watching) {
    if (on) uv_ref((uv_handle_t *)&r->poll);
    else uv_unref((uv_handle_t *)&r->poll);
  }
  return NULL;
}

static void on_poll_closed(uv_handle_t *handle) {
  ring_unref(handle->data);
}

/*
 * close(ring): stop watching and release the ring. The kernel cancels or
 * finishes requests still in flight before the ring's memory goes; the
 * caller must not reuse their buffers until it knows they are done.
 */
static napi_value ring_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) return NULL;
  ring_t *r = p;
  if (r->fd < 0 || r->closing) return NULL;
  if (r->callback) {
    napi_delete_reference(env, r->callback);
    r->callback = NULL;
  }
  if (r->async) {
    napi_async_destroy(env, r->async);
    r->async = NULL;
  }
  if (r->watching) {
    /* The handle must be closed before the memory goes: free in the close callback. */
    r->closing = 1;
    uv_poll_stop(&r->poll);
    r->watching = 0;
    uv_close((uv_handle_t *)&r->poll, on_poll_closed);
    /* Closed now: later calls see ESHUTDOWN. The struct goes when both owners are done. */
    ring_release(r);
  } else {
    ring_release(r);
  }
  return NULL;
}

/* ---- scheduling and memory ---------------------------------------------- */

static napi_value sched_yield_js(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  sched_yield();
  return NULL;
}

static napi_value gettid_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_int32(env, (int32_t)syscall(SYS_gettid), &result);
  return result;
}

/* setAffinity(cpus: number[]): pin the calling thread. Throws with the errno on refusal. */
static napi_value set_affinity(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t n = 0;
  CHECK(env, napi_get_array_length(env, argv[0], &n));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    uint32_t cpu = 0;
    napi_get_element(env, argv[0], i, &v);
    napi_get_value_uint32(env, v, &cpu);
    if (cpu >= CPU_SETSIZE) return throw_errno(env, "sched_setaffinity", EINVAL);
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) != 0) return throw_errno(env, "sched_setaffinity", errno);
  return NULL;
}

/* getAffinity() → the calling thread's CPU list. */
static napi_value get_affinity(napi_env env, napi_callback_info info) {
  (void)info;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return throw_errno(env, "sched_getaffinity", errno);
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &set)) continue;
    napi_value v;
    napi_create_uint32(env, (uint32_t)cpu, &v);
    napi_set_element(env, arr, k++, v);
  }
  return arr;
}

/* setNice(n): the calling thread's nice value (Linux: per thread). Throws on refusal. */
static napi_value set_nice(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t nice = 0;
  napi_get_value_int32(env, argv[0], &nice);
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0) return throw_errno(env, "setpriority", errno);
  return NULL;
}

/* addressAlignment(buffer) → the buffer's start address modulo 4096. */
static napi_value address_alignment(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *data;
  size_t len;
  if (!bytes_arg(env, argv[0], &data, &len)) return NULL;
  napi_value result;
  napi_create_uint32(env, (uint32_t)((uintptr_t)data & 4095), &result);
  return result;
}


/* ---- shared regions and doorbells (process guests) ---------------------- */

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif
#define HUGE_BYTES (2u * 1024 * 1024)

static void set_named_int(napi_env env, napi_value o, const char *k, int64_t v) {
  napi_value x;
  napi_create_int64(env, v, &x);
  napi_set_named_property(env, o, k, x);
}

static void set_named_str(napi_env env, napi_value o, const char *k, const char *v) {
  napi_value x;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, o, k, x);
}

/*
 * memfdCreate(name, bytes, huge) → { fd, huge, bytes, why }. With huge, first
 * a hugetlb memfd (size rounded up to 2 MiB; its pages are reserved when it is
 * mapped, so the caller maps it at once and falls back on failure). Sealed
 * against shrinking and growing: the other side (an untrusted guest process)
 * could otherwise truncate it and turn the controller's next access into a
 * SIGBUS. `why` says why huge pages were not used ("" when they were or were
 * not asked for).
 */
static napi_value memfd_create_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[64] = "storvisor";
  size_t nlen;
  napi_get_value_string_utf8(env, argv[0], name, sizeof name, &nlen);
  int64_t bytes = i64_arg(env, argv[1]);
  bool huge = false;
  napi_get_value_bool(env, argv[2], &huge);
  if (bytes <= 0 || bytes > ((int64_t)1 << 40)) return throw_errno(env, "memfdCreate", EINVAL);
  char why[160] = "";
  int fd = -1;
  int64_t size = bytes;
  int got_huge = 0;
  if (huge) {
    size = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
    if (fd < 0) {
      snprintf(why, sizeof why, "hugetlb memfd: %s", strerror(errno));
    } else if (ftruncate(fd, size) != 0) {
      snprintf(why, sizeof why, "hugetlb ftruncate: %s", strerror(errno));
      close(fd);
      fd = -1;
    } else {
      got_huge = 1;
    }
  }
  if (fd < 0) {
    size = bytes;
    fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return throw_errno(env, "memfd_create", errno);
    if (ftruncate(fd, size) != 0) {
      int e = errno;
      close(fd);
      return throw_errno(env, "ftruncate", e);
    }
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "memfd seal", e);
  }
  napi_value o;
  napi_create_object(env, &o);
  set_named_int(env, o, "fd", fd);
  set_named_int(env, o, "bytes", size);
  napi_value h;
  napi_get_boolean(env, got_huge, &h);
  napi_set_named_property(env, o, "huge", h);
  set_named_str(env, o, "why", why);
  return o;
}

typedef struct mapping {
  void *addr;
  size_t len;
} mapping_t;

static void mapping_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = hint;
  munmap(m->addr, m->len);
  free(m);
}

/*
 * mapShared(fd, bytes, lock) → { buffer, locked, fileBytes }. Maps the whole
 * file (MAP_SHARED, populated up front so the I/O path takes no page faults)
 * and hands JS an ArrayBuffer over its first `bytes`. Refuses a file smaller
 * than `bytes` and one that can still shrink (a sealed memfd cannot), so no
 * access through the buffer can fault. With lock, tries mlock (reported; a
 * refusal is not an error). The mapping goes when the buffer is collected.
 */
static napi_value map_shared(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  int64_t bytes = i64_arg(env, argv[1]);
  bool lock = false;
  napi_get_value_bool(env, argv[2], &lock);
  struct stat st;
  if (fstat(fd, &st) != 0) return throw_errno(env, "fstat", errno);
  if (bytes <= 0 || st.st_size < bytes) return throw_errno(env, "mapShared: file smaller than the region", EINVAL);
#ifdef F_GET_SEALS
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) return throw_errno(env, "mapShared: region file is not sealed against shrinking", EINVAL);
#endif
  size_t len = (size_t)st.st_size;
  void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (addr == MAP_FAILED) return throw_errno(env, "mmap", errno);
  int locked = lock ? (mlock(addr, len) == 0) : 0;
  mapping_t *m = malloc(sizeof *m);
  if (!m) {
    munmap(addr, len);
    return throw_errno(env, "malloc", ENOMEM);
  }
  m->addr = addr;
  m->len = len;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, addr, (size_t)bytes, mapping_finalize, m, &ab) != napi_ok) {
    munmap(addr, len);
    free(m);
    napi_throw_error(env, NULL, "napi_create_external_arraybuffer failed");
    return NULL;
  }
  napi_value o, l;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "buffer", ab);
  napi_get_boolean(env, locked, &l);
  napi_set_named_property(env, o, "locked", l);
  set_named_int(env, o, "fileBytes", (int64_t)len);
  return o;
}

/* eventfdCreate() → fd (non-blocking, close-on-exec; spawn's stdio mapping clears that in the child). */
static napi_value eventfd_create_js(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return throw_errno(env, "eventfd", errno);
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

/* eventfdWrite(fd): add 1 (one system call; a full counter means a wake-up is already due). */
static napi_value eventfd_write_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
  return NULL;
}

/* closeFd(fd) */
static napi_value close_fd_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  if (fd > 2) close(fd);
  return NULL;
}

typedef struct fdwatch {
  int fd;
  uv_poll_t poll;
  int watching;
  int refs; /* the JS external and the uv handle */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
} fdwatch_t;

static void fdwatch_unref(fdwatch_t *w) {
  if (--w->refs > 0) return;
  free(w);
}

static void fdwatch_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  fdwatch_t *w = data;
  if (w->watching) {
    uv_poll_stop(&w->poll);
    w->watching = 0;
    w->callback = NULL;
  }
  fdwatch_unref(w);
}

static void on_fdwatch(uv_poll_t *handle, int status, int events) {
  (void)events;
  fdwatch_t *w = handle->data;
  uint64_t value;
  /* Drain: one callback covers every ring so far. */
  while (read(w->fd, &value, sizeof value) > 0) {
  }
  if (status < 0 || w->callback == NULL) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, ignored;
  if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv);
    napi_make_callback(env, w->async, recv, cb, 0, NULL, &ignored);
  }
  napi_close_handle_scope(env, scope);
}

static void on_fdwatch_closed(uv_handle_t *handle) {
  fdwatch_unref(handle->data);
}

/*
 * fdWatch(fd, callback) → watch. Calls back (no arguments) on this thread's
 * loop whenever the eventfd was written; unref'd (a waiter keeps the loop
 * alive itself). The fd stays the caller's: watchClose does not close it.
 */
static napi_value fd_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  napi_get_value_int32(env, argv[0], &fd);
  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  fdwatch_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "fdWatch", ENOMEM);
  w->fd = fd;
  w->env = env;
  if (uv_poll_init(loop, &w->poll, fd) != 0) {
    free(w);
    return throw_errno(env, "uv_poll_init", EBADF);
  }
  w->poll.data = w;
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_value name, resource, ext;
  napi_create_string_utf8(env, "storvisor:doorbell", NAPI_AUTO_LENGTH, &name);
  napi_create_object(env, &resource);
  napi_async_init(env, resource, name, &w->async);
  w->refs = 2;
  uv_poll_start(&w->poll, UV_READABLE, on_fdwatch);
  uv_unref((uv_handle_t *)&w->poll);
  w->watching = 1;
  CHECK(env, napi_create_external(env, w, fdwatch_finalize, NULL, &ext));
  return ext;
}

/* watchClose(watch): stop calling back; idempotent. */
static napi_value watch_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) return NULL;
  fdwatch_t *w = p;
  if (!w->watching) return NULL;
  w->watching = 0;
  if (w->callback) napi_delete_reference(env, w->callback);
  w->callback = NULL;
  if (w->async) napi_async_destroy(env, w->async);
  w->async = NULL;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_fdwatch_closed);
  return NULL;
}

/* setThreadAffinity(tid, cpus): pin one thread of this process (tid 0 = the caller). */
static napi_value set_thread_affinity(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t tid = 0;
  napi_get_value_int32(env, argv[0], &tid);
  uint32_t n = 0;
  CHECK(env, napi_get_array_length(env, argv[1], &n));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    uint32_t cpu = 0;
    napi_get_element(env, argv[1], i, &v);
    napi_get_value_uint32(env, v, &cpu);
    if (cpu >= CPU_SETSIZE) return throw_errno(env, "sched_setaffinity", EINVAL);
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity((pid_t)tid, sizeof set, &set) != 0) return throw_errno(env, "sched_setaffinity", errno);
  return NULL;
}

/* setThreadNice(tid, nice): one thread's nice value (tid 0 = the caller). */
static napi_value set_thread_nice(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t tid = 0, nice = 0;
  napi_get_value_int32(env, argv[0], &tid);
  napi_get_value_int32(env, argv[1], &nice);
  if (setpriority(PRIO_PROCESS, (id_t)(tid ? tid : syscall(SYS_gettid)), nice) != 0) return throw_errno(env, "setpriority", errno);
  return NULL;
}

/*
 * setThreadScheduler(tid, policy, rtPriority): policy 0 = SCHED_OTHER,
 * 1 = SCHED_FIFO, 2 = SCHED_RR. Throws EPERM where the process is not
 * permitted a real-time policy; the caller reports what was applied.
 */
static napi_value set_thread_scheduler(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t tid = 0, policy = 0, prio = 0;
  napi_get_value_int32(env, argv[0], &tid);
  napi_get_value_int32(env, argv[1], &policy);
  napi_get_value_int32(env, argv[2], &prio);
  int pol = policy == 1 ? SCHED_FIFO : policy == 2 ? SCHED_RR : SCHED_OTHER;
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  sp.sched_priority = pol == SCHED_OTHER ? 0 : prio;
  if (sched_setscheduler((pid_t)tid, pol, &sp) != 0) return throw_errno(env, "sched_setscheduler", errno);
  return NULL;
}

/* ---- module ------------------------------------------------------------- */

#ifdef STORVISOR_LZ4
/* native/lz4.c: LZ4 block compression through liblz4 (built in when the build found it). */
void storvisor_lz4_init(napi_env env, napi_value exports);
#endif

/* native/xxhash.c: XXH64 fingerprints and the zero-block test for the dedup volume (always built). */
void storvisor_xxhash_init(napi_env env, napi_value exports);

/* native/crc32.c: CRC-32 of a buffer range for the database log (always built). */
napi_value storvisor_crc32_range(napi_env env, napi_callback_info info);
napi_value storvisor_crc32_records(napi_env env, napi_callback_info info);

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
    {"ringCreate", NULL, ring_create, NULL, NULL, NULL, napi_default, NULL},
    {"prepRw", NULL, prep_rw, NULL, NULL, NULL, napi_default, NULL},
    {"prepFsync", NULL, prep_fsync, NULL, NULL, NULL, napi_default, NULL},
    {"submit", NULL, ring_submit, NULL, NULL, NULL, napi_default, NULL},
    {"hold", NULL, ring_hold, NULL, NULL, NULL, napi_default, NULL},
    {"reap", NULL, ring_reap, NULL, NULL, NULL, napi_default, NULL},
    {"ready", NULL, ring_ready, NULL, NULL, NULL, napi_default, NULL},
    {"notify", NULL, ring_notify, NULL, NULL, NULL, napi_default, NULL},
    {"watch", NULL, ring_watch, NULL, NULL, NULL, napi_default, NULL},
    {"ref", NULL, ring_ref, NULL, NULL, NULL, napi_default, NULL},
    {"ringClose", NULL, ring_close, NULL, NULL, NULL, napi_default, NULL},
    {"schedYield", NULL, sched_yield_js, NULL, NULL, NULL, napi_default, NULL},
    {"gettid", NULL, gettid_js, NULL, NULL, NULL, napi_default, NULL},
    {"setAffinity", NULL, set_affinity, NULL, NULL, NULL, napi_default, NULL},
    {"getAffinity", NULL, get_affinity, NULL, NULL, NULL, napi_default, NULL},
    {"setNice", NULL, set_nice, NULL, NULL, NULL, napi_default, NULL},
    {"addressAlignment", NULL, address_alignment, NULL, NULL, NULL, napi_default, NULL},
    {"memfdCreate", NULL, memfd_create_js, NULL, NULL, NULL, napi_default, NULL},
    {"mapShared", NULL, map_shared, NULL, NULL, NULL, napi_default, NULL},
    {"eventfdCreate", NULL, eventfd_create_js, NULL, NULL, NULL, napi_default, NULL},
    {"eventfdWrite", NULL, eventfd_write_js, NULL, NULL, NULL, napi_default, NULL},
    {"closeFd", NULL, close_fd_js, NULL, NULL, NULL, napi_default, NULL},
    {"fdWatch", NULL, fd_watch, NULL, NULL, NULL, napi_default, NULL},
    {"watchClose", NULL, watch_close, NULL, NULL, NULL, napi_default, NULL},
    {"setThreadAffinity", NULL, set_thread_affinity, NULL, NULL, NULL, napi_default, NULL},
    {"setThreadNice", NULL, set_thread_nice, NULL, NULL, NULL, napi_default, NULL},
    {"setThreadScheduler", NULL, set_thread_scheduler, NULL, NULL, NULL, napi_default, NULL},
    {"crc32Range", NULL, storvisor_crc32_range, NULL, NULL, NULL, napi_default, NULL},
    {"crc32Records", NULL, storvisor_crc32_records, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value rwf;
  napi_create_uint32(env, RWF_DSYNC, &rwf);
  napi_set_named_property(env, exports, "RWF_DSYNC", rwf);
  storvisor_xxhash_init(env, exports);
#ifdef STORVISOR_LZ4
  storvisor_lz4_init(env, exports);
#endif
  return exports;
}
