/*
 * CRC-32 (the zlib / IEEE 802.3 checksum, the same values as zlib.crc32) of a
 * range of a buffer, for the database log's records (one call per record, no
 * subarray object per call). x86-64 with PCLMULQDQ and SSE4.1 folds 64 bytes
 * at a time with carry-less multiplies (the method of Gopal et al., "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ Instruction", Intel
 * 2009, with the Linux kernel's crc32-pclmul constants for the reflected
 * polynomial 0xEDB88320): about 5x zlib's table code on a 4 KiB record. The
 * head of a short range, the tail that is not a multiple of 16 and CPUs
 * without the instructions go through zlib's crc32 (the copy the node binary
 * exports, as native/lz4.c uses).
 *
 *   crc32Range(buf, offset, length, seed)  crc32 of buf[offset, offset + length)
 *                                          continuing from `seed` (zlib's crc32(data, seed));
 *                                          throws RangeError when the range is not inside buf
 */
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <zlib.h>

#include <node_api.h>

#include "napi-check.h"
#include "le.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#include <smmintrin.h>
#include <wmmintrin.h>
#define STORVISOR_CRC_PCLMUL 1

/* Bytes below this go to zlib: the folding needs 64, and its setup does not pay for much less. */
#define FOLD_MIN 128

/*
 * The crc register (zlib's crc, not inverted: the caller inverts) over `len`
 * bytes, len >= 64 and a multiple of 16.
 */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_fold(const uint8_t *buf, size_t len, uint32_t crc) {
  /* x^(4*128+32) mod P and x^(4*128-32) mod P (fold by 64 bytes), then by 16 bytes, 64 -> 32 bits, Barrett. */
  const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
  const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
  const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
  const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
  __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;

  x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
  x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
  x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
  x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
  x0 = k1k2;
  buf += 64;
  len -= 64;

  while (len >= 64) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
    x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
    x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
    x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
    y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
    x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
    x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
    x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
    buf += 64;
    len -= 64;
  }

  /* Four lanes into one. */
  x0 = k3k4;
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
  x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
  x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
  x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);

  while (len >= 16) {
    x2 = _mm_loadu_si128((const __m128i *)buf);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    buf += 16;
    len -= 16;
  }

  /* 128 bits to 64. */
  x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
  x3 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = _mm_srli_si128(x1, 8);
  x1 = _mm_xor_si128(x1, x2);
  x0 = k5k0;
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_and_si128(x1, x3);
  x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(x1, x2);

  /* Barrett reduction to 32 bits. */
  x0 = poly;
  x2 = _mm_and_si128(x1, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
  x2 = _mm_and_si128(x2, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int have_pclmul = -1;

static int pclmul_ok(void) {
  if (have_pclmul < 0) {
    __builtin_cpu_init();
    have_pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  }
  return have_pclmul;
}
#endif

/* zlib's crc32 (seed in, value out), the folded middle where the CPU has it. */
static uint32_t crc32_range(const uint8_t *p, size_t len, uint32_t seed) {
#ifdef STORVISOR_CRC_PCLMUL
  if (len >= FOLD_MIN && pclmul_ok()) {
    size_t mid = len & ~(size_t)15;
    uint32_t c = ~crc32_fold(p, mid, ~seed);
    return len == mid ? c : (uint32_t)crc32(c, p + mid, (uInt)(len - mid));
  }
#endif
  return (uint32_t)crc32(seed, p, (uInt)len);
}

/*
 * The (buf, a, b, seed) arguments of both exports as a byte range of buf:
 * [a, a + b) when `b_is_length`, else [a, b). 0 when they are not a TypedArray
 * and three numbers or the range is not inside buf (thrown, with `usage` or
 * `name`), 1 otherwise.
 */
static int byte_range(napi_env env, napi_callback_info info, const char *name, const char *usage, int b_is_length, uint8_t **data,
                      size_t *from, size_t *to, uint32_t *seed) {
  size_t argc = 4;
  napi_value argv[4];
  size_t n;
  double a, b;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "N-API call failed");
    return 0;
  }
  if (argc < 4 || !storvisor_typed_bytes(env, argv[0], data, &n) || napi_get_value_double(env, argv[1], &a) != napi_ok ||
      napi_get_value_double(env, argv[2], &b) != napi_ok || napi_get_value_uint32(env, argv[3], seed) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  double end = b_is_length ? a + b : b;
  if (!(a >= 0) || !(b >= 0) || !(end >= a) || a != (double)(size_t)a || b != (double)(size_t)b || end > (double)n) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s: the range is not inside the buffer", name);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *from = (size_t)a;
  *to = (size_t)end;
  return 1;
}

/* Registered in native/storvisor.c's property table. */
napi_value storvisor_crc32_range(napi_env env, napi_callback_info info) {
  uint8_t *data;
  size_t from, to;
  uint32_t seed;
  if (!byte_range(env, info, "crc32Range", "crc32Range(buf, offset, length, seed): a TypedArray and three numbers", 1, &data, &from, &to, &seed))
    return NULL;
  napi_value out;
  CHECK(env, napi_create_uint32(env, crc32_range(data + from, to - from, seed), &out));
  return out;
}

/*
 * crc32Records(buf, from, to, seed): seal the database log records that lie
 * back to back in buf[from, to) (src/functions/database/log/format.ts,
 * version 2: u32 crc, u32 payload length, then 8 + payload bytes). Each
 * record's crc is the crc32 of its bytes after the crc field, seeded with the
 * previous record's (the first with `seed`); it is stored little-endian in
 * the record's first four bytes. Returns the last crc (the next seed). One
 * call per batch instead of one per record.
 */
napi_value storvisor_crc32_records(napi_env env, napi_callback_info info) {
  uint8_t *data;
  size_t from, to;
  uint32_t seed;
  if (!byte_range(env, info, "crc32Records", "crc32Records(buf, from, to, seed): a TypedArray and three numbers", 0, &data, &from, &to, &seed))
    return NULL;
  size_t p = from, end = to;
  while (p < end) {
    /* A record is at least its 16-byte header and 5 payload bytes, and ends inside the range. */
    if (end - p < 21) goto torn;
    uint32_t payload = le32(data + p + 4);
    if (payload < 5 || (size_t)payload > end - p - 16) goto torn;
    size_t size = 16 + (size_t)payload;
    uint32_t crc = crc32_range(data + p + 4, size - 4, seed);
    data[p] = (uint8_t)crc;
    data[p + 1] = (uint8_t)(crc >> 8);
    data[p + 2] = (uint8_t)(crc >> 16);
    data[p + 3] = (uint8_t)(crc >> 24);
    seed = crc;
    p += size;
  }
  napi_value out;
  CHECK(env, napi_create_uint32(env, seed, &out));
  return out;
torn:
  napi_throw_range_error(env, NULL, "crc32Records: a record does not end inside the range");
  return NULL;
}
