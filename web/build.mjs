// Bundle the front-end into web/static/dist: `npm run build` (esbuild). The output is not committed.
// Every file directly in web/static/src (*.js, *.css) is an entry, bundled to dist/<name>; modules they
// import live in src/lib/. Code loaded with import() becomes a chunk of its own (dist/chunks/), so a page
// only downloads the bpmn-js viewer or a chart library when it draws one.
import { build } from "esbuild";
import { mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "static", "src");
const out = join(here, "static", "dist");
const production = process.env.NODE_ENV !== "development";
const KEEP = new Set(["translations", ".built"]); // dist/ also holds the catalogs web/i18n.py compiles

const entries = (await readdir(src, { withFileTypes: true }))
  .filter((e) => e.isFile() && /\.(js|css)$/.test(e.name))
  .map((e) => join(src, e.name))
  .sort();

await mkdir(out, { recursive: true });
for (const name of await readdir(out)) {
  if (!KEEP.has(name)) await rm(join(out, name), { recursive: true, force: true });
}

await build({
  entryPoints: entries,
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm", // loaded with <script type="module">: the CSP allows 'self' scripts only
  target: ["es2020", "chrome90", "firefox90", "safari15"],
  entryNames: "[name]",
  chunkNames: "chunks/[name]-[hash]",
  minify: production,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "info",
});
