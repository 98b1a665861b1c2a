/*
 * Block fingerprints for the dedup volume: XXH64 (seed 0, the same digest as
 * @node-rs/xxhash's xxh64) and the zero-block test, one N-API call per write
 * chunk instead of one per block, with no BigInt and no allocation: digests go
 * into a Uint32Array the caller holds. Needs no library (the algorithm is the
 * public XXH64 specification, written out below), so it is always built.
 *
 *   xxh64Into(src, out)                    out[0] = low 32 bits, out[1] = high 32 bits
 *   fingerprintBlocks(src, blockSize, out, zero)
 *                                          per block k of src (src.length / blockSize
 *                                          whole blocks): zero[k] = 1 when every byte
 *                                          is 0, else 0; a non-zero block's digest goes
 *                                          to out[2k] (low 32 bits), out[2k+1] (high);
 *                                          out = null: the zero test alone. Returns the
 *                                          number of non-zero blocks.
 */
#include <stdint.h>
#include <string.h>
#include <stdbool.h>

#include <node_api.h>

#include "le.h"
#include "napi-check.h"


#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t xround(uint64_t acc, uint64_t input) {
  acc += input * P2;
  acc = rotl64(acc, 31);
  return acc * P1;
}

static inline uint64_t xmerge(uint64_t acc, uint64_t v) {
  acc ^= xround(0, v);
  return acc * P1 + P4;
}

static uint64_t storvisor_xxh64(const uint8_t *p, size_t len, uint64_t seed) {
  const uint8_t *end = p + len;
  uint64_t h;
  if (len >= 32) {
    const uint8_t *limit = end - 32;
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    do {
      v1 = xround(v1, le64(p));
      v2 = xround(v2, le64(p + 8));
      v3 = xround(v3, le64(p + 16));
      v4 = xround(v4, le64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xmerge(h, v1);
    h = xmerge(h, v2);
    h = xmerge(h, v3);
    h = xmerge(h, v4);
  } else {
    h = seed + P5;
  }
  h += (uint64_t)len;
  for (; p + 8 <= end; p += 8) {
    h ^= xround(0, le64(p));
    h = rotl64(h, 27) * P1 + P4;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)le32(p) * P1;
    h = rotl64(h, 23) * P2 + P3;
    p += 4;
  }
  for (; p < end; p++) {
    h ^= (uint64_t)(*p) * P5;
    h = rotl64(h, 11) * P1;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

/* Whether all n bytes are 0: 64 bytes per step, so non-zero data (nearly always) exits on the first step. */
static bool all_zero(const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint64_t w[8];
    memcpy(w, p + i, 64);
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  for (; i < n; i++)
    if (p[i] != 0) return false;
  return true;
}

/* xxh64Into(src, out: Uint32Array of at least 2): out[0] = low 32 bits, out[1] = high 32 bits. */
static napi_value xxh64_into_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src, *out;
  size_t sn, on;
  napi_typedarray_type type;
  if (argc < 2 || !storvisor_typed_bytes(env, argv[0], &src, &sn) || napi_get_typedarray_info(env, argv[1], &type, NULL, NULL, NULL, NULL) != napi_ok ||
      type != napi_uint32_array || !storvisor_typed_bytes(env, argv[1], &out, &on) || on < 8) {
    napi_throw_type_error(env, NULL, "xxh64Into(src: Uint8Array, out: Uint32Array of at least 2)");
    return NULL;
  }
  uint64_t h = storvisor_xxh64(src, sn, 0);
  uint32_t w[2] = {(uint32_t)h, (uint32_t)(h >> 32)};
  memcpy(out, w, 8);
  return NULL;
}

/* fingerprintBlocks(src, blockSize, out: Uint32Array | null, zero: Uint8Array): see the header. */
static napi_value fingerprint_blocks_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src, *out = NULL, *zero;
  size_t sn, on = 0, zn;
  int32_t block = 0;
  napi_valuetype ot = napi_undefined;
  if (argc >= 3) CHECK(env, napi_typeof(env, argv[2], &ot));
  bool hashing = ot != napi_null;
  napi_typedarray_type type = napi_uint8_array;
  if (argc < 4 || !storvisor_typed_bytes(env, argv[0], &src, &sn) || napi_get_value_int32(env, argv[1], &block) != napi_ok ||
      (hashing && (napi_get_typedarray_info(env, argv[2], &type, NULL, NULL, NULL, NULL) != napi_ok || type != napi_uint32_array ||
                   !storvisor_typed_bytes(env, argv[2], &out, &on))) ||
      !storvisor_typed_bytes(env, argv[3], &zero, &zn)) {
    napi_throw_type_error(env, NULL, "fingerprintBlocks(src: Uint8Array, blockSize, out: Uint32Array | null, zero: Uint8Array)");
    return NULL;
  }
  if (block <= 0 || sn % (size_t)block != 0) {
    napi_throw_range_error(env, NULL, "fingerprintBlocks: src must be whole blocks of blockSize bytes");
    return NULL;
  }
  size_t count = sn / (size_t)block;
  if (zn < count || (hashing && on < count * 8)) {
    napi_throw_range_error(env, NULL, "fingerprintBlocks: out or zero is too short for the blocks of src");
    return NULL;
  }
  int32_t nonzero = 0;
  for (size_t k = 0; k < count; k++) {
    const uint8_t *b = src + k * (size_t)block;
    if (all_zero(b, (size_t)block)) {
      zero[k] = 1;
      if (hashing) memset(out + k * 8, 0, 8);
      continue;
    }
    zero[k] = 0;
    nonzero++;
    if (!hashing) continue;
    uint64_t h = storvisor_xxh64(b, (size_t)block, 0);
    uint32_t w[2] = {(uint32_t)h, (uint32_t)(h >> 32)};
    memcpy(out + k * 8, w, 8);
  }
  napi_value r;
  CHECK(env, napi_create_int32(env, nonzero, &r));
  return r;
}

void storvisor_xxhash_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"xxh64Into", NULL, xxh64_into_js, NULL, NULL, NULL, napi_default, NULL},
    {"fingerprintBlocks", NULL, fingerprint_blocks_js, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
