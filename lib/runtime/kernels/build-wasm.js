#!/usr/bin/env node
/**
 * Builds the C sources of lib/runtime/kernels/c/ (conv2d.c: the convolution forward and both
 * gradients; groupnorm.c: GroupNorm-SiLU forward and backward) into ONE wasm module with clang-14
 * and lld-14 (wasm-ld-14) and writes its bytes, base64, into lib/runtime/kernels/simd-wasm.ts
 * (committed, so that `npm ci` works without clang; CI rebuilds it and compares bytes).
 *
 *   node lib/runtime/kernels/build-wasm.js          build; rewrite the .ts if the bytes changed. Without
 *                                                  clang-14, keep the committed .ts if it was built
 *                                                  from this very C source (its sha256), else fail.
 *   node lib/runtime/kernels/build-wasm.js --check  (also under CI=true) build and fail unless the
 *                                                  bytes equal the committed ones; clang-14 required.
 *
 * The module imports tfjs-wasm's memory, so it must never write memory it was not handed: the build
 * fails if the output has a data section, imports anything but env.memory, or its code touches a
 * global (the stack pointer: spills to a stack in linear memory would land in tfjs's heap).
 */
'use strict';
const { execFileSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const HERE = __dirname;
const SOURCES = ['conv2d.c', 'groupnorm.c'].map((f) => path.join(HERE, 'c', f));
const OUTPUT = path.join(HERE, 'simd-wasm.ts');
/** Every function the module must export. */
const EXPORTS = ['conv2d_backprop_filter', 'conv2d_backprop_input', 'conv2d_forward', 'conv2d_winograd', 'conv2d_winograd_filter', 'group_norm_silu', 'group_norm_silu_grad'];
const CLANG = 'clang-14';
const LLD = 'wasm-ld-14';
const OBJDUMP = 'llvm-objdump-14';
const INSTALL = 'apt-get install -y clang-14 lld-14 llvm-14';
const FLAGS = [
  '--target=wasm32', '-msimd128', '-O3', '-nostdlib', '-ffreestanding', '-fno-builtin', '-Wall', '-Wextra', '-Werror',
  '-Wl,--no-entry', '-Wl,--import-memory', '-Wl,--strip-all',
];

function has(tool) {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** The committed module's fields, or null when the file is missing or not in the generated form. */
function readCommitted() {
  if (!fs.existsSync(OUTPUT)) return null;
  const text = fs.readFileSync(OUTPUT, 'utf8');
  const field = (name) => (text.match(new RegExp(`export const ${name} = '([^']*)';`)) || [])[1];
  const base64 = field('SIMD_WASM_BASE64');
  const sourceSha = field('SIMD_SOURCE_SHA256');
  if (base64 === undefined || sourceSha === undefined) return null;
  return { bytes: Buffer.from(base64, 'base64'), sourceSha };
}

/** Reads a LEB128 u32 at `at`; returns [value, next offset]. */
function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    value |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value >>> 0, at];
    shift += 7;
  }
}

/** Fails unless the module owns no memory: no data section, only the env.memory import, no global access. */
function checkModule(bytes, wasmFile) {
  const ids = [];
  for (let at = 8; at < bytes.length;) {
    const id = bytes[at];
    const [size, body] = leb(bytes, at + 1);
    ids.push(id);
    at = body + size;
  }
  if (ids.includes(11) || ids.includes(12)) throw new Error(`build-wasm: ${wasmFile} has a data section; the module must write no memory of its own`);
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
  if (imports.join() !== 'env.memory:memory') throw new Error(`build-wasm: ${wasmFile} must import only env.memory, imports [${imports}]`);
  const exports = WebAssembly.Module.exports(mod).map((e) => e.name);
  const absent = EXPORTS.filter((e) => !exports.includes(e));
  if (absent.length > 0) throw new Error(`build-wasm: ${wasmFile} does not export ${absent.join(', ')} (exports [${exports}])`);
  const asm = execFileSync(OBJDUMP, ['-d', wasmFile], { encoding: 'utf8' });
  const bad = asm.split('\n').filter((l) => /\bglobal\.(get|set)\b/.test(l));
  if (bad.length > 0) throw new Error(`build-wasm: ${wasmFile}'s code touches a global (the stack pointer?):\n${bad.slice(0, 5).join('\n')}`);
}

function build() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-wasm-'));
  try {
    const wasmFile = path.join(dir, 'kernels.wasm');
    execFileSync(CLANG, [...FLAGS, '-o', wasmFile, ...SOURCES], { stdio: ['ignore', 'inherit', 'inherit'] });
    const bytes = fs.readFileSync(wasmFile);
    checkModule(bytes, wasmFile);
    return bytes;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function render(bytes, sourceSha) {
  const b64 = bytes.toString('base64');
  return [
    `// GENERATED by lib/runtime/kernels/build-wasm.js from ${SOURCES.map((f) => `lib/runtime/kernels/c/${path.basename(f)}`).join(' and ')}`,
    `// (${CLANG} ${FLAGS.join(' ')}). Do not edit: run \`npm run build\`;`,
    '// under CI=true the build rebuilds it and fails if the bytes differ.',
    '',
    `/** The wasm module (base64): ${EXPORTS.join(', ')}, over an imported memory. */`,
    `export const SIMD_WASM_BASE64 = '${b64}';`,
    '/** sha256 of the C sources it was built from (each file\'s name and bytes, in order). */',
    `export const SIMD_SOURCE_SHA256 = '${sourceSha}';`,
    '/** sha256 of the module bytes. */',
    `export const SIMD_WASM_SHA256 = '${sha256(bytes)}';`,
    '',
  ].join('\n');
}

function main() {
  const check = process.argv.includes('--check') || process.env.CI === 'true';
  const sourceSha = sha256(Buffer.concat(SOURCES.flatMap((f) => [Buffer.from(`${path.basename(f)}\n`), fs.readFileSync(f)])));
  const committed = readCommitted();
  const tools = has(CLANG) && has(LLD) && has(OBJDUMP);
  if (!tools) {
    const missing = `${CLANG}, ${LLD} (lld-14) and ${OBJDUMP} (llvm-14) are needed to build ${SOURCES.map((f) => path.relative(process.cwd(), f)).join(' and ')}; on Debian: ${INSTALL}`;
    if (check) throw new Error(`build-wasm --check: ${missing}`);
    if (committed && committed.sourceSha === sourceSha) {
      console.log(`build-wasm: ${CLANG} not found; using the committed module, built from these C sources (sha256 ${sourceSha.slice(0, 12)}).`);
      return;
    }
    throw new Error(`build-wasm: the C sources changed since the committed module was built, and ${missing}`);
  }
  const bytes = build();
  if (check) {
    if (!committed) throw new Error(`build-wasm --check: ${OUTPUT} is missing or not in the generated form`);
    if (committed.sourceSha !== sourceSha) throw new Error(`build-wasm --check: ${OUTPUT} was built from other C sources (sha256 ${committed.sourceSha.slice(0, 12)}, the sources are ${sourceSha.slice(0, 12)}); run npm run build and commit it`);
    if (!committed.bytes.equals(bytes)) throw new Error(`build-wasm --check: ${CLANG} builds ${bytes.length} bytes (sha256 ${sha256(bytes).slice(0, 12)}) that differ from the committed ${committed.bytes.length} (sha256 ${sha256(committed.bytes).slice(0, 12)})`);
    console.log(`build-wasm --check: the committed module is byte for byte what ${CLANG} builds (${bytes.length} bytes).`);
    return;
  }
  const text = render(bytes, sourceSha);
  if (committed && fs.readFileSync(OUTPUT, 'utf8') === text) {
    console.log(`build-wasm: ${path.basename(OUTPUT)} is up to date (${bytes.length} bytes).`);
    return;
  }
  const tmp = `${OUTPUT}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, OUTPUT);
  console.log(`build-wasm: wrote ${path.basename(OUTPUT)} (${bytes.length} bytes); commit it.`);
}

try {
  main();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}
