#!/usr/bin/env node
// Builds a JavaScript journey into a pure cairn component:
//   node build.mjs --entry journey.js --wit <dir> --out journey.wasm
// esbuild bundles the journey with this SDK into one module whose exports
// are the SDK's; componentize-js turns it into a component with every WASI
// feature disabled, so it imports only cairn's interfaces.
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
for (const required of ["entry", "wit", "out"]) {
  if (!args[required]) {
    console.error(`usage: build.mjs --entry journey.js --wit <dir> --out journey.wasm (missing --${required})`);
    process.exit(2);
  }
}
const sdk = dirname(fileURLToPath(import.meta.url));
const work = await mkdtemp(join(tmpdir(), "cairn-js-"));
try {
  const main = join(work, "main.js");
  await writeFile(
    main,
    `import definition from ${JSON.stringify(resolve(args.entry))};\n` +
      `import { exportsFor } from ${JSON.stringify(join(sdk, "index.js"))};\n` +
      `const e = exportsFor(definition);\n` +
      `export const meta = e.meta;\nexport const start = e.start;\nexport const resume = e.resume;\n`,
  );
  const bundle = join(work, "bundle.js");
  await build({
    entryPoints: [main],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    outfile: bundle,
    external: ["cairn:*"],
    alias: { "cairn-journey": join(sdk, "index.js") },
    logLevel: "error",
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: resolve(args.wit),
    worldName: "journey",
    disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
  });
  await writeFile(resolve(args.out), component);
} catch (error) {
  console.error(error && error.message ? error.message : String(error));
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
