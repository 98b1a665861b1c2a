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
 *   lz4VerifyFragment(block, data, slot, maxSlots)
 *                               whether fragment `slot` of a packed block decompresses
 *                               to exactly `data`: 1 equal, 0 different, < 0 unreadable
 *                               (the dedup volume's duplicate verify, in one call)
 */
#include <stdint.h>
#include <string.h>
#include <stdbool.h>

#include <lz4.h>
#include <node_api.h>
#include <zlib.h> /* crc32: the copy of zlib the node binary exports (its headers ship zlib.h) */

#include "le.h"
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

/*
 * Packed block layout (src/functions/dedup/fragments.ts, Packer and fragmentOf; little-endian):
 *   magic u32 "SVPK" | count u16 | reserved u16 | count x (offset u16, length u16, crc32 u32) | ... | fragments
 * The checks are fragmentOf's, in its order, so a fragment the TypeScript path calls
 * unreadable is unreadable here too.
 */
#define PACK_MAGIC 0x4b505653u
#define PACK_HEADER 8u
#define PACK_SLOT 8u


/* Results of verify_fragment below 0: why the fragment cannot be read. */
enum { VERIFY_BAD_MAGIC = -1, VERIFY_NO_SLOT = -2, VERIFY_OUTSIDE = -3, VERIFY_CRC = -4, VERIFY_UNDECODABLE = -5 };

/*
 * Whether the LZ4 block `src` decodes to exactly `data`, without decoding it anywhere: a
 * literal run is compared with the next bytes of `data`, and a match with the bytes of `data`
 * `offset` back. That is the decoder's copy, checked instead of made: by induction every
 * byte before the match start equals the decoder's output, so data[pos+k] == data[pos-offset+k]
 * (an overlapping run too, offset < length) holds exactly when the decoded match equals data.
 * No output buffer, and memcmp instead of the byte-by-byte copy LZ4 makes of a short-offset run
 * (the zero tail of a compressible block: 4 us per 4 KiB block through LZ4_decompress_safe here).
 *
 * It accepts no stream LZ4_decompress_safe refuses: the end-of-block rules are the ones it
 * enforces (a match starts at least MFLIMIT = 12 bytes before the end and ends at least
 * LASTLITERALS = 5 before it; a sequence that is not the last leaves at least 8 input bytes;
 * the last one is literals only and ends the input), an offset is 1..pos, every length stays
 * inside both buffers. It may refuse more (offset 0): a missed duplicate, never a wrong one.
 * 1 equal, 0 different, VERIFY_UNDECODABLE malformed or not exactly dn bytes.
 */
/* A sequence's length: `nibble`, and when it is 15 the bytes that follow (255 = more); false when the input ends first. Stops adding past `cap`. */
static bool read_length(const uint8_t **ip, const uint8_t *iend, unsigned nibble, size_t cap, size_t *len) {
  size_t n = nibble;
  if (nibble == 15) {
    unsigned b;
    do {
      if (*ip >= iend) return false;
      b = *(*ip)++;
      n += b;
    } while (b == 255 && n <= cap);
  }
  *len = n;
  return true;
}

static int lz4_equals(const uint8_t *src, size_t sn, const uint8_t *data, size_t dn) {
  const uint8_t *ip = src, *iend = src + sn;
  size_t pos = 0;
  if (sn == 0) return VERIFY_UNDECODABLE;
  for (;;) {
    if (ip >= iend) return VERIFY_UNDECODABLE;
    unsigned token = *ip++;
    size_t lit;
    if (!read_length(&ip, iend, token >> 4, dn, &lit)) return VERIFY_UNDECODABLE;
    if (lit > (size_t)(iend - ip) || lit > dn - pos) return VERIFY_UNDECODABLE;
    if (lit > 0 && memcmp(ip, data + pos, lit) != 0) return 0;
    ip += lit;
    pos += lit;
    if (ip == iend) return pos == dn ? 1 : VERIFY_UNDECODABLE; /* the last sequence: literals only */
    /* Not the last: LZ4_decompress_safe's end-of-block rules. */
    if ((size_t)(iend - ip) < 8 || dn < 12 || pos > dn - 12) return VERIFY_UNDECODABLE;
    size_t offset = (size_t)ip[0] | ((size_t)ip[1] << 8);
    ip += 2;
    if (offset == 0 || offset > pos) return VERIFY_UNDECODABLE;
    size_t len;
    if (!read_length(&ip, iend, token & 15u, dn, &len)) return VERIFY_UNDECODABLE;
    len += 4; /* the minimum match */
    if (dn < 5 || len > dn - 5 - pos) return VERIFY_UNDECODABLE;
    if (memcmp(data + pos, data + pos - offset, len) != 0) return 0;
    pos += len;
  }
}

static int verify_fragment(const uint8_t *block, size_t bn, uint32_t slot, uint32_t max_slots, const uint8_t *data, size_t dn) {
  if (bn < PACK_HEADER || le32(block) != PACK_MAGIC) return VERIFY_BAD_MAGIC;
  uint32_t count = le16(block + 4);
  if (count > max_slots || slot >= count || PACK_HEADER + (size_t)count * PACK_SLOT > bn) return VERIFY_NO_SLOT;
  const uint8_t *at = block + PACK_HEADER + (size_t)slot * PACK_SLOT;
  uint32_t off = le16(at), len = le16(at + 2);
  if (off < PACK_HEADER + count * PACK_SLOT || (size_t)off + len > bn) return VERIFY_OUTSIDE;
  if ((uint32_t)crc32(0L, block + off, len) != le32(at + 4)) return VERIFY_CRC;
  return lz4_equals(block + off, len, data, dn);
}

/* lz4VerifyFragment(block, data, slot, maxSlots): 1 equal, 0 different, < 0 the fragment is unreadable. */
static napi_value lz4_verify_fragment_js(napi_env env, napi_callback_info info) {
  uint8_t *block, *data;
  size_t bn, dn;
  size_t argc = 4;
  napi_value args[4];
  int32_t slot = 0, max_slots = 0;
  if (!storvisor_two_buffers(env, info, &block, &bn, &data, &dn) || napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_value_int32(env, args[2], &slot) != napi_ok || napi_get_value_int32(env, args[3], &max_slots) != napi_ok) {
    napi_throw_type_error(env, NULL, "lz4VerifyFragment(block: Uint8Array, data: Uint8Array, slot, maxSlots)");
    return NULL;
  }
  if (slot < 0 || max_slots < 0 || bn > 65536 || dn > 4096) {
    napi_throw_range_error(env, NULL, "lz4VerifyFragment: slot and maxSlots are not negative, a packed block is at most 64 KiB, data at most 4 KiB");
    return NULL;
  }
  return int_result(env, verify_fragment(block, bn, (uint32_t)slot, (uint32_t)max_slots, data, dn));
}

void storvisor_lz4_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"lz4Compress", NULL, lz4_compress_js, NULL, NULL, NULL, napi_default, NULL},
    {"lz4Decompress", NULL, lz4_decompress_js, NULL, NULL, NULL, napi_default, NULL},
    {"lz4CompressBlocks", NULL, lz4_compress_blocks_js, NULL, NULL, NULL, napi_default, NULL},
    {"lz4VerifyFragment", NULL, lz4_verify_fragment_js, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_string_utf8(env, LZ4_versionString(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "lz4Version", v);
}
