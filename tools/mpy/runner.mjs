// Runs the MicroPython test set under the real MicroPython interpreter (the official
// WebAssembly build, @micropython/micropython-webassembly-pyscript, pinned in package.json).
//
//   node runner.mjs [--data DIR] [extra_test.py ...]
//
// Copies the portable modules (globs in tools/mpy/portable.txt, keeping the edge/ package
// layout) and tests/mpy/*.py into the interpreter's in-memory filesystem under /lib, writes
// /lib/_portable.py (the module names, so a test can import every one of them), then runs
// every test_* function of every tests/mpy/test_*.py module and of the extra files. With
// --data DIR, the files of DIR are copied to /data and the tests/mpy/data_*.py modules run
// too (tests/test_micropython.py generates their inputs with CPython).
// The last line is always "mpy: N passed, M failed"; the exit status is non-zero when a
// test failed, none ran, or the interpreter itself failed.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { join, dirname, basename } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const started = Date.now();

const args = process.argv.slice(2);
let dataDir = null;
const extra = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--data") dataDir = args[++i];
  else extra.push(args[i]);
}

let passed = 0;
let failed = 0;
function line(l) {
  // Results are counted here, not in Python, so a crashed interpreter still gets a verdict.
  if (/^ok {3}\S/.test(l)) passed++;
  else if (/^FAIL \S/.test(l)) failed++;
  console.log(l);
}
const mp = await loadMicroPython({ heapsize: 16 * 1024 * 1024, stdout: line, stderr: line });

// Glob over path segments: "*" and "?" within one segment; a missing directory matches nothing.
function globFiles(pattern) {
  const segRe = (s) =>
    new RegExp("^" + s.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]") + "$");
  let paths = [""];
  for (const seg of pattern.split("/")) {
    const next = [];
    for (const p of paths) {
      const dir = join(root, p);
      if (!/[*?]/.test(seg)) {
        if (existsSync(join(dir, seg))) next.push(p ? p + "/" + seg : seg);
        continue;
      }
      if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
      const re = segRe(seg);
      for (const f of readdirSync(dir).sort()) if (re.test(f)) next.push(p ? p + "/" + f : f);
    }
    paths = next;
  }
  return paths.filter((p) => statSync(join(root, p)).isFile());
}

function put(path, data) {
  let cur = "";
  for (const p of path.split("/").slice(0, -1)) {
    cur += "/" + p;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
  mp.FS.writeFile("/" + path, data);
}

const portable = readFileSync(join(root, "tools/mpy/portable.txt"), "utf8")
  .split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
const moduleNames = [];
for (const pattern of portable) {
  for (const f of globFiles(pattern)) {
    put("lib/" + f, readFileSync(join(root, f)));
    const name = f.replace(/\.py$/, "").replace(/\/__init__$/, "").split("/").join(".");
    if (!moduleNames.includes(name)) moduleNames.push(name);
  }
}
put("lib/_portable.py", "MODULES = " + JSON.stringify(moduleNames) + "\n");

const testDir = join(root, "tests/mpy");
const testFiles = readdirSync(testDir).filter((f) => f.endsWith(".py")).sort();
for (const f of testFiles) put("lib/" + f, readFileSync(join(testDir, f)));
for (const f of extra) put("lib/" + basename(f), readFileSync(f));
if (dataDir) {
  try { mp.FS.mkdir("/data"); } catch (e) { /* exists */ }
  for (const f of readdirSync(dataDir).sort()) put("data/" + f, readFileSync(join(dataDir, f)));
}

const modules = [
  ...testFiles.filter((f) => f.startsWith("test_")),
  ...(dataDir ? testFiles.filter((f) => f.startsWith("data_")) : []),
  ...extra.map((f) => basename(f)),
].map((f) => f.replace(/\.py$/, ""));

try {
  mp.runPython("import sys\nsys.path.insert(0, '/lib')\nimport mpyrun\nmpyrun.main(" +
    JSON.stringify(modules) + ")");
} catch (e) {
  line(`FAIL runner: ${String(e)}`);
}
if (passed === 0 && failed === 0) line("FAIL runner: no test ran");
console.log(`(${moduleNames.length} portable modules, ${modules.length} test modules, ` +
  `${((Date.now() - started) / 1000).toFixed(1)} s)`);
console.log(`mpy: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
