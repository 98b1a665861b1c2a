/* Shared by the addon's C files (storvisor.c, lz4.c, xxhash.c). */
#ifndef STORVISOR_NAPI_CHECK_H
#define STORVISOR_NAPI_CHECK_H
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

/* A failed N-API call throws and returns NULL from the caller. */
#define CHECK(env, call)                                  \
  do {                                                    \
    if ((call) != napi_ok) {                              \
      napi_throw_error((env), NULL, "N-API call failed"); \
      return NULL;                                        \
    }                                                     \
  } while (0)

/* native/storvisor.c: the bytes of a TypedArray or Buffer; 0 (nothing thrown) when `v` is not one. */
int storvisor_typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);

/*
 * native/storvisor.c: a call's first two arguments as bytes (src, dst); 0 when
 * there are fewer or either is not a TypedArray: the caller throws its usage.
 */
int storvisor_two_buffers(napi_env env, napi_callback_info info, uint8_t **a, size_t *an, uint8_t **b, size_t *bn);
#endif
