// `npm run build`: bundle src/app.js (with NiiVue) and copy the page into the server's static folder.
// The output folder is build output (gitignored); `extremefast serve` serves it at / and /static/.
import { build } from 'esbuild'
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, '..', 'extremefast', 'serve', 'static')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })
const result = await build({
  entryPoints: [join(here, 'src', 'app.js')],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  metafile: true,
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
})
// the licences of the packages inside the bundle, beside it (NiiVue BSD-2-Clause, the rest MIT/ISC)
const packages = new Set()
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)
  if (m) packages.add(m[1])
}
const notices = [...packages].sort().map((dir) => {
  const meta = JSON.parse(readFileSync(join(here, dir, 'package.json'), 'utf8'))
  const file = readdirSync(join(here, dir)).find((f) => /^(licen[cs]e|copying)(\.md|\.txt)?$/i.test(f))
  const text = file ? readFileSync(join(here, dir, file), 'utf8').trim() : `(the npm package ships no licence file; package.json says ${meta.license})`
  return `${meta.name} ${meta.version} -- ${meta.license}\n\n${text}\n`
})
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), `The bundle app.js contains these npm packages.\n\n${notices.join('\n' + '-'.repeat(72) + '\n\n')}`)
for (const name of ['index.html', 'style.css']) copyFileSync(join(here, 'src', name), join(out, name))
console.log(`built ${out}`)
