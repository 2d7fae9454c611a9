// Runs tests/mpy/test_*.py under the real MicroPython interpreter (WebAssembly build).
// Copies the portable modules (tools/mpy/portable.txt) into its in-memory filesystem,
// then every test_* function of every test module; prints "mpy: N passed, M failed"
// and exits non-zero on any failure. Extra test files may be given as arguments.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname, basename } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = [];  // everything MicroPython prints
const mp = await loadMicroPython({ stdout: (l) => out.push(l), stderr: (l) => out.push(l) });

function globFiles(pattern) {
  const dir = dirname(pattern), base = basename(pattern);
  if (!base.includes("*")) return existsSync(join(root, pattern)) ? [pattern] : [];
  const re = new RegExp("^" + base.replace(".", "\\.").replace("*", ".*") + "$");
  return readdirSync(join(root, dir)).filter((f) => re.test(f)).map((f) => join(dir, f));
}

function put(path, text) {
  const parts = path.split("/");
  let cur = "";
  for (const p of parts.slice(0, -1)) {
    cur += "/" + p;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
  mp.FS.writeFile("/" + path, text);
}

const portable = readFileSync(join(root, "tools/mpy/portable.txt"), "utf8")
  .split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
for (const pattern of portable) {
  for (const f of globFiles(pattern)) put("lib/" + f, readFileSync(join(root, f), "utf8"));
}
const testDir = join(root, "tests/mpy");
const tests = readdirSync(testDir).filter((f) => f.endsWith(".py"));
for (const f of tests) put("lib/" + f, readFileSync(join(testDir, f), "utf8"));
const extra = process.argv.slice(2);
for (const f of extra) put("lib/" + basename(f), readFileSync(f, "utf8"));
mp.runPython("import sys\nsys.path.insert(0, '/lib')");

const modules = [...tests.filter((f) => f.startsWith("test_")), ...extra.map((f) => basename(f))]
  .map((f) => f.replace(/\.py$/, ""));
try {
  mp.runPython(`import mpyrun\n_failed = mpyrun.main(${JSON.stringify(modules)})`);
} catch (e) {
  out.push(`FAIL runner: ${String(e)}`);
}
console.log(out.join("\n"));
const m = out.join("\n").match(/mpy: (\d+) passed, (\d+) failed/);
process.exit(m && Number(m[2]) === 0 && Number(m[1]) > 0 ? 0 : 1);
