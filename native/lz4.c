/*
 * LZ4 block compression for the dedup volume, through the system's liblz4
 * (Debian: liblz4-dev). Built into storvisor.node only when the build found
 * <lz4.h> and liblz4 (scripts/build-native.mjs passes storvisor_lz4=1 to
 * binding.gyp); otherwise src/functions/dedup/fragments.ts uses the LZ4 in
 * TypeScript (lz4.ts), which reads and writes the same block format.
 *
 * Every entry point is synchronous and writes into buffers the caller holds:
 * no allocation, no copy in or out, one N-API call per block or per batch.
 *
 *   lz4Compress(src, dst)       compressed length, or 0 when it does not fit dst
 *   lz4Decompress(src, dst)     bytes produced, or -1 when src is malformed or
 *                               would overflow dst
 *   lz4CompressBlocks(src, blockSize, which, count, dst, slot, lengths)
 *                               block which[k] of src (blockSize bytes each) into
 *                               dst[k*slot, (k+1)*slot): lengths[k] = its length
 *                               or 0; returns how many compressed
 */
#include <stdint.h>
#include <string.h>
#include <stdbool.h>

#include <lz4.h>
#include <node_api.h>

#include "napi-check.h"


static napi_value int_result(napi_env env, int32_t n) {
  napi_value r;
  CHECK(env, napi_create_int32(env, n, &r));
  return r;
}

static int compress_into(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  if (n > (size_t)LZ4_MAX_INPUT_SIZE || cap > (size_t)INT32_MAX) return 0;
  /* 0 when the output would not fit `cap`: "does not compress well enough" costs no extra pass. */
  /* liblz4 keeps its state on the stack (LZ4_HEAPMODE 0): no malloc per call, any thread. */
  return LZ4_compress_fast((const char *)src, (char *)dst, (int)n, (int)cap, 1);
}

/* lz4Compress(src, dst): compressed length, or 0 when the result would not fit in dst. */
static napi_value lz4_compress_js(napi_env env, napi_callback_info info) {
  uint8_t *src, *dst;
  size_t sn, dn;
  if (!storvisor_two_buffers(env, info, &src, &sn, &dst, &dn)) {
    napi_throw_type_error(env, NULL, "lz4Compress(src, dst): two Uint8Arrays");
    return NULL;
  }
  return int_result(env, compress_into(src, sn, dst, dn));
}

/* lz4Decompress(src, dst): bytes produced, or -1 (malformed input, or it would overflow dst). */
static napi_value lz4_decompress_js(napi_env env, napi_callback_info info) {
  uint8_t *src, *dst;
  size_t sn, dn;
  if (!storvisor_two_buffers(env, info, &src, &sn, &dst, &dn)) {
    napi_throw_type_error(env, NULL, "lz4Decompress(src, dst): two Uint8Arrays");
    return NULL;
  }
  if (sn == 0 || sn > (size_t)INT32_MAX || dn > (size_t)INT32_MAX) return int_result(env, -1);
  int r = LZ4_decompress_safe((const char *)src, (char *)dst, (int)sn, (int)dn);
  return int_result(env, r < 0 ? -1 : r);
}

/*
 * lz4CompressBlocks(src, blockSize, which, count, dst, slot, lengths): block which[k]
 * of src into dst at k*slot (at most slot bytes); lengths[k] = its length, or 0 when it
 * does not fit. Returns how many blocks compressed. Every index is bounds-checked.
 */
static napi_value lz4_compress_blocks_js(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src, *dst, *which_b, *len_b;
  size_t sn, dn, wn, ln;
  int32_t block = 0, count = 0, slot = 0;
  if (argc < 7 || !storvisor_typed_bytes(env, argv[0], &src, &sn) || !storvisor_typed_bytes(env, argv[2], &which_b, &wn) || !storvisor_typed_bytes(env, argv[4], &dst, &dn) ||
      !storvisor_typed_bytes(env, argv[6], &len_b, &ln) || napi_get_value_int32(env, argv[1], &block) != napi_ok ||
      napi_get_value_int32(env, argv[3], &count) != napi_ok || napi_get_value_int32(env, argv[5], &slot) != napi_ok) {
    napi_throw_type_error(env, NULL, "lz4CompressBlocks(src, blockSize, which: Int32Array, count, dst, slot, lengths: Int32Array)");
    return NULL;
  }
  if (block <= 0 || slot <= 0 || count < 0 || (size_t)count * 4 > wn || (size_t)count * 4 > ln || (size_t)count * (size_t)slot > dn) {
    napi_throw_range_error(env, NULL, "lz4CompressBlocks: count, blockSize or slot out of range of the buffers");
    return NULL;
  }
  const int32_t *which = (const int32_t *)which_b;
  int32_t *lengths = (int32_t *)len_b;
  int32_t done = 0;
  for (int32_t k = 0; k < count; k++) {
    int32_t i = which[k];
    if (i < 0 || (size_t)i * (size_t)block + (size_t)block > sn) {
      napi_throw_range_error(env, NULL, "lz4CompressBlocks: a block index is outside src");
      return NULL;
    }
    int n = compress_into(src + (size_t)i * block, (size_t)block, dst + (size_t)k * slot, (size_t)slot);
    lengths[k] = n;
    if (n > 0) done++;
  }
  return int_result(env, done);
}

void storvisor_lz4_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"lz4Compress", NULL, lz4_compress_js, NULL, NULL, NULL, napi_default, NULL},
    {"lz4Decompress", NULL, lz4_decompress_js, NULL, NULL, NULL, napi_default, NULL},
    {"lz4CompressBlocks", NULL, lz4_compress_blocks_js, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_string_utf8(env, LZ4_versionString(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "lz4Version", v);
}
