/**
 * Loaded before every test file (package.json's test scripts pass it with --import, and the test
 * runner hands it on to each file's process): the environment the suite runs in. A variable the
 * user has set is kept.
 *
 * Without a GPU the webgpu tests run on Mesa's lavapipe, which compiles every compute shader with
 * LLVM for the CPU's widest vectors (256 bits with AVX2 or AVX-512). A cold shader cache — every
 * CI run — made compilation most of those tests' time: test/webgpu-*.test.ts took 290 s, 164 s at
 * 128-bit vectors (2 files at a time, a new empty MESA_SHADER_CACHE_DIR each; 93 of 93 pass
 * either way), webgpu-ops alone 157 s cold, 97 s at 128 bits, 31 s warm. The shaders compute
 * the same values at either width; lavapipe's subgroups are 4 lanes instead of 8 (the tests
 * check subgroup reductions against the cpu backend, not a lane count). Eden itself sets
 * nothing: a user's lavapipe keeps its defaults.
 */
process.env['LP_NATIVE_VECTOR_WIDTH'] ??= '128';
