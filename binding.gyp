{
  "variables": {
    # 1 when scripts/build-native.mjs found <lz4.h> and liblz4 (apt-get install liblz4-dev):
    # native/lz4.c is built in and linked with -llz4. 0: the dedup volume uses its LZ4 in TypeScript.
    "storvisor_lz4%": 0
  },
  "targets": [
    {
      "target_name": "storvisor",
      "sources": ["native/storvisor.c", "native/xxhash.c", "native/crc32.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources": [] }],
        ["OS=='linux' and storvisor_lz4==1", {
          "sources": ["native/lz4.c"],
          "defines": ["STORVISOR_LZ4=1"],
          "libraries": ["-llz4"]
        }]
      ]
    }
  ]
}
