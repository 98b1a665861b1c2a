/* Shared by the addon's C files: a failed N-API call throws and returns NULL from the caller. */
#ifndef STORVISOR_NAPI_CHECK_H
#define STORVISOR_NAPI_CHECK_H
#define CHECK(env, call)                                  \
  do {                                                    \
    if ((call) != napi_ok) {                              \
      napi_throw_error((env), NULL, "N-API call failed"); \
      return NULL;                                        \
    }                                                     \
  } while (0)
#endif
