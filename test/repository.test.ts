/**
 * The repository as a document: nothing in it points outside it, README.md stays short enough for a
 * newcomer, every relative link in README.md and docs/ resolves (anchors included), and
 * docs/equations.md is linked both ways with the notebooks and the library; the workbook, the GPU
 * check and the benchmark import the library only through its entry. Fast: no tf, no build.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';
import { expect } from 'chai';
import * as ts from 'typescript';

const root = path.resolve(__dirname, '..');
const README_MAX_LINES = 250;
const EQUATIONS = path.join(root, 'docs', 'equations.md');

/** Paths that only exist beside this checkout, never in a clone of it. */
const OUTSIDE_PATTERNS: RegExp[] = [/shared\/(math|seed|STYLE)/, /\.\.\/shared/, /\/work\//];

/** The repository's files, as git tracks them (a plain walk where there is no git). */
function repositoryFiles(dir: string): string[] {
  try {
    const out = execFileSync('git', ['ls-files', '-z'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split('\0').filter((f) => f !== '');
  } catch {
    const skip = new Set(['.git', 'node_modules', 'dist', 'out', '.gpu']);
    const files: string[] = [];
    const walk = (rel: string) => {
      for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (!skip.has(e.name)) walk(r);
        } else if (e.isFile()) files.push(r);
      }
    };
    walk('');
    return files;
  }
}

/** The tracked text files that are ours: not the lock file, nothing vendored, nothing binary. */
function ownTextFiles(dir: string): { rel: string; text: string }[] {
  const result: { rel: string; text: string }[] = [];
  for (const rel of repositoryFiles(dir)) {
    if (path.basename(rel) === 'package-lock.json' || rel.split('/').includes('node_modules')) continue;
    const abs = path.join(dir, rel);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isFile()) continue; // deleted in the work tree
    const buf = fs.readFileSync(abs);
    if (buf.subarray(0, 8000).includes(0)) continue; // binary (the PNG figure)
    result.push({ rel, text: buf.toString('utf8') });
  }
  return result;
}

/** Each line of text that names a path outside the repository, as "line N: ...". */
function outsideReferences(text: string): string[] {
  const hits: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (OUTSIDE_PATTERNS.some((re) => re.test(line))) hits.push(`line ${i + 1}: ${line.trim().slice(0, 160)}`);
  });
  return hits;
}

/** Markdown with fenced code blocks and inline code spans blanked, so that examples are not links. */
function withoutCode(md: string): string {
  return md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`+[^`\n]*`+/g, '');
}

/** The targets of the markdown links and images in md (one level of brackets in the link text). */
function markdownLinks(md: string): string[] {
  const re = /!?\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
  return [...withoutCode(md).matchAll(re)].map((m) => m[1]);
}

/** GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a markdown file offers: explicit <a id>/<a name> and heading slugs (with -1, -2 for repeats). */
function anchorsOf(md: string): Set<string> {
  const anchors = new Set<string>();
  for (const m of md.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]);
  const seen = new Map<string, number>();
  for (const m of md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target);

/** Each relative link in the markdown file `abs` that leaves dir, names no existing file or names no anchor there. */
function brokenLinks(abs: string, dir: string, md = fs.readFileSync(abs, 'utf8')): string[] {
  const problems: string[] = [];
  for (const target of markdownLinks(md)) {
    if (isExternal(target)) continue;
    const hash = target.indexOf('#');
    const file = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
    const anchor = hash < 0 ? '' : decodeURIComponent(target.slice(hash + 1));
    if (file === '') {
      if (!anchorsOf(md).has(anchor)) problems.push(`${target}: no such anchor in this file`);
      continue;
    }
    const resolved = path.resolve(path.dirname(abs), file);
    const inside = path.relative(dir, resolved);
    if (inside.startsWith('..') || path.isAbsolute(inside)) {
      problems.push(`${target}: leaves the repository`);
    } else if (!fs.existsSync(resolved)) {
      problems.push(`${target}: ${inside} does not exist`);
    } else if (anchor !== '' && resolved.endsWith('.md') && !anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
      problems.push(`${target}: ${inside} has no anchor #${anchor}`);
    }
  }
  return problems;
}

interface Section {
  heading: string;
  anchor: string | undefined;
  body: string;
}

/** The level-2 sections of an equations page, each with the explicit anchor just above its heading. */
function sections(md: string): Section[] {
  const lines = md.split('\n');
  const starts = lines.flatMap((l, i) => (/^## /.test(l) ? [i] : []));
  return starts.map((start, k) => {
    let j = start - 1;
    while (j >= 0 && lines[j].trim() === '') j--;
    const anchor = j >= 0 ? /^<a\s+id="([^"]+)"><\/a>\s*$/.exec(lines[j].trim())?.[1] : undefined;
    const end = k + 1 < starts.length ? starts[k + 1] : lines.length;
    return { heading: lines[start].slice(3).trim(), anchor, body: lines.slice(start, end).join('\n') };
  });
}

/** What a section of the equations page at `abs` lacks: a link to an existing notebook and to an existing lib/ file. */
function sectionProblems(section: Section, abs: string, dir: string): string[] {
  const targets = markdownLinks(section.body)
    .filter((t) => !isExternal(t))
    .map((t) => path.relative(dir, path.resolve(path.dirname(abs), decodeURIComponent(t.split('#')[0]))).split(path.sep).join('/'));
  const exists = (rel: string) => fs.existsSync(path.join(dir, rel));
  const problems: string[] = [];
  if (section.anchor === undefined) problems.push('no <a id="..."></a> anchor above its heading');
  if (!targets.some((t) => /^notebooks\/[^/]+\.ipynb$/.test(t) && exists(t))) problems.push('no link to an existing notebook');
  if (!targets.some((t) => /^lib\/.+\.ts$/.test(t) && exists(t))) problems.push('no link to an existing lib/ file');
  return problems;
}

/** The workbook's notebooks, as the runners find them (notebooks/*.ipynb, not hidden, not _drafts). */
function notebookFiles(dir: string): string[] {
  return fs
    .readdirSync(path.join(dir, 'notebooks'))
    .filter((f) => f.endsWith('.ipynb') && !f.startsWith('.') && !f.startsWith('_'))
    .sort()
    .map((f) => path.join(dir, 'notebooks', f));
}

/** All markdown cells of a notebook, joined. */
function notebookMarkdown(file: string): string {
  const nb = JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: { cell_type: string; source: string | string[] }[] };
  return nb.cells
    .filter((c) => c.cell_type === 'markdown')
    .map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source))
    .join('\n\n');
}

/**
 * The one module a client may import past the entry: the test-only fault seam (null in a production
 * run), which the CLI's training loop reads; exporting it from the entry would make a test hook public API.
 */
const FAULT_SEAM = 'lib/runtime/faults';

/** The folders whose TypeScript imports the library only through its entry, lib/index.ts (issue 9). */
const CLIENT_FOLDERS = ['lib/workbook', 'lib/cli', 'bench', 'gpu'];

/** The module specifiers a TypeScript source names: imports, exports from, import(), require(); TypeScript's own scanner, so comments and strings are not imports. */
function moduleSpecifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** The folder a repository path counts as its own: lib/<name> for a file under lib/<name>/, else its first segment. */
function ownFolder(rel: string): string {
  const parts = rel.split('/');
  return parts[0] === 'lib' && parts.length > 2 ? `lib/${parts[1]}` : parts[0];
}

/**
 * The lib/ module a relative specifier in the file `rel` names, without extension or trailing
 * /index (so the entry is 'lib'); dist/lib/... counts as lib/..., being its build. null for a
 * package or anything outside lib/.
 */
function libraryTarget(rel: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  let target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\/$/, '');
  if (target === 'dist/lib' || target.startsWith('dist/lib/')) target = target.slice('dist/'.length);
  target = target.replace(/\.(d\.ts|ts|js)$/, '').replace(/\/index$/, '');
  return target === 'lib' || target.startsWith('lib/') ? target : null;
}

/** Whether a lib/ module (libraryTarget's form; null: none) lies outside the own folder of the file `rel`. */
function outsideOwnFolder(rel: string, target: string | null): boolean {
  const own = ownFolder(rel);
  return target !== null && target !== own && !target.startsWith(`${own}/`);
}

/** Each specifier of the file `rel` (its text) that reaches into lib/ outside its own folder other than through the entry, as "rel: 'spec'". */
function entryViolations(rel: string, text: string): string[] {
  return moduleSpecifiers(text)
    .filter((spec) => {
      const target = libraryTarget(rel, spec);
      return outsideOwnFolder(rel, target) && target !== 'lib' && target !== FAULT_SEAM;
    })
    .map((spec) => `${rel}: '${spec}'`);
}

/** The tracked .ts sources under `folders` (no declarations, nothing under node_modules or a build folder). */
function tsSources(dir: string, folders: string[]): { rel: string; text: string }[] {
  return ownTextFiles(dir).filter(
    (f) => f.rel.endsWith('.ts') && !f.rel.endsWith('.d.ts') && !f.rel.split('/').some((p) => p === 'build' || p === 'dist') && folders.some((d) => f.rel.startsWith(`${d}/`)),
  );
}

/** The entry rule over the tracked .ts files of `folders`: how many files and library imports it saw, and every violation. */
function clientImportProblems(dir: string, folders: string[]): { files: number; libraryImports: number; violations: string[] } {
  const files = tsSources(dir, folders);
  const libraryImports = files.reduce((n, f) => n + moduleSpecifiers(f.text).filter((s) => outsideOwnFolder(f.rel, libraryTarget(f.rel, s))).length, 0);
  return { files: files.length, libraryImports, violations: files.flatMap((f) => entryViolations(f.rel, f.text)) };
}

/** Each specifier of a library file (lib/ outside lib/workbook and lib/cli) that imports the workbook or the CLI. */
function libraryImportsOfClients(rel: string, text: string): string[] {
  return moduleSpecifiers(text)
    .filter((spec) => {
      const target = libraryTarget(rel, spec);
      return target !== null && ['lib/workbook', 'lib/cli'].some((c) => target === c || target.startsWith(`${c}/`));
    })
    .map((spec) => `${rel}: '${spec}'`);
}

const markdownPages = () => [
  path.join(root, 'README.md'),
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join(root, 'docs', f)),
];

describe('the repository', () => {
  it('no tracked text file refers to a path outside the repository', () => {
    const files = ownTextFiles(root);
    expect(files.length, 'the tracked files were found').to.be.above(50);
    const hits = files.flatMap((f) => outsideReferences(f.text).map((h) => `${f.rel} ${h}`));
    expect(hits).to.deep.equal([]);
  });

  it(`README.md has at most ${README_MAX_LINES} lines`, () => {
    const text = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const lines = text.endsWith('\n') ? text.split('\n').length - 1 : text.split('\n').length;
    expect(lines).to.be.at.most(README_MAX_LINES);
  });

  it('every relative link in README.md and docs/*.md names an existing file, and an existing anchor in a markdown target', () => {
    const pages = markdownPages();
    expect(pages.map((p) => path.relative(root, p))).to.include.members(['README.md', path.join('docs', 'equations.md')]);
    const links = pages.reduce((n, p) => n + markdownLinks(fs.readFileSync(p, 'utf8')).length, 0);
    expect(links, 'links were found at all').to.be.above(50);
    const problems = pages.flatMap((p) => brokenLinks(p, root).map((m) => `${path.relative(root, p)}: ${m}`));
    expect(problems).to.deep.equal([]);
  });

  it('every section of docs/equations.md has an anchor and links a notebook and a lib/ file that exist', () => {
    const md = fs.readFileSync(EQUATIONS, 'utf8');
    const all = sections(md);
    // notation, forward, reverse, ELBO, posterior, noise prediction, generation, and beyond the text
    expect(all.length, 'the sections were found').to.be.at.least(12);
    const problems = all.flatMap((s) => sectionProblems(s, EQUATIONS, root).map((m) => `"${s.heading}": ${m}`));
    expect(problems).to.deep.equal([]);
  });

  it("every notebook's markdown links back to docs/equations.md, and every relative link in it resolves", () => {
    const files = notebookFiles(root);
    expect(files.length, 'the notebooks were found').to.be.at.least(7);
    const problems: string[] = [];
    for (const file of files) {
      const md = notebookMarkdown(file);
      const name = path.relative(root, file);
      const back = markdownLinks(md).filter((t) => !isExternal(t) && path.resolve(path.dirname(file), t.split('#')[0]) === EQUATIONS);
      if (back.length === 0) problems.push(`${name}: no link to docs/equations.md`);
      problems.push(...brokenLinks(file, root, md).map((m) => `${name}: ${m}`));
    }
    expect(problems).to.deep.equal([]);
  });

  it('every anchor of docs/equations.md that a tracked file names (doc comments, notebooks) exists there', () => {
    const anchors = anchorsOf(fs.readFileSync(EQUATIONS, 'utf8'));
    const named = ownTextFiles(root).flatMap((f) => [...f.text.matchAll(/docs\/equations\.md#([A-Za-z0-9_-]+)/g)].map((m) => ({ rel: f.rel, anchor: m[1] })));
    expect(named.length, 'the library names its sections').to.be.above(15);
    expect(named.filter((n) => !anchors.has(n.anchor)).map((n) => `${n.rel}: #${n.anchor}`)).to.deep.equal([]);
  });

  it('lib/workbook, lib/cli, bench and gpu import lib/ only through the entry (lib/index.ts), their own folder, or (the CLI) the fault seam', () => {
    const { files, libraryImports, violations } = clientImportProblems(root, CLIENT_FOLDERS);
    expect(files, 'the sources were found').to.be.above(20);
    // bench (5, core.ts's a type), the GPU check (1), lib/workbook/library.ts (2) and figures.ts's types (1) today
    expect(libraryImports, 'their imports of the library were found').to.be.at.least(5);
    expect(violations).to.deep.equal([]);
  });

  it('the library (lib/ outside lib/workbook and lib/cli) imports neither the workbook nor the CLI', () => {
    const lib = ownTextFiles(root).filter((f) => /^lib\/.+\.ts$/.test(f.rel) && !/^lib\/(workbook|cli)\//.test(f.rel) && !f.rel.endsWith('.d.ts'));
    expect(lib.length, 'the library sources were found').to.be.above(30);
    expect(lib.flatMap((f) => libraryImportsOfClients(f.rel, f.text))).to.deep.equal([]);
  });

  it("the workbook's door and the in-process runner's child start without loading the library (the entry is required on first use)", function () {
    this.timeout(60000);
    const hook = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-door-')), 'hook.js');
    // At exit: the modules loaded from lib/ and whether TensorFlow.js was among them.
    fs.writeFileSync(
      hook,
      `process.on('exit', () => { const k = Object.keys(require.cache); process.stderr.write('LOADED ' + JSON.stringify({ tf: k.some((f) => f.includes('@tensorflow')), lib: k.filter((f) => !f.includes('node_modules')).map((f) => require('path').relative(${JSON.stringify(root)}, f)) }) + '\\n'); });`,
    );
    const tsx = require.resolve('tsx/cjs', { paths: [root] });
    const loaded = (args: string[]) => {
      const r = spawnSync(process.execPath, ['--require', tsx, '--require', hook, ...args], { cwd: root, encoding: 'utf8' });
      const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
      expect(line, `the exit hook reported (stderr: ${r.stderr.slice(0, 400)})`).to.be.a('string');
      return JSON.parse(line!.slice('LOADED '.length)) as { tf: boolean; lib: string[] };
    };
    try {
      const door = loaded(['-e', "require('./lib/workbook')"]);
      expect(door.lib, 'the door itself was loaded').to.include(path.join('lib', 'workbook', 'index.ts'));
      expect(door).to.deep.include({ tf: false });
      expect(door.lib).to.not.include(path.join('lib', 'index.ts'));
      // The child, given a request file that does not exist, fails (exit 2) after its imports ran.
      const child = loaded([path.join(root, 'lib', 'workbook', 'runners', 'child.ts'), path.join(os.tmpdir(), 'ddpm-no-such-request.json')]);
      expect(child.lib, 'the child itself was loaded').to.include(path.join('lib', 'workbook', 'runners', 'child.ts'));
      expect(child).to.deep.include({ tf: false });
      expect(child.lib).to.not.include(path.join('lib', 'index.ts'));
    } finally {
      fs.rmSync(path.dirname(hook), { recursive: true, force: true });
    }
  });

  describe('the checks themselves fail on what they exist to catch', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-repo-'));
      fs.mkdirSync(path.join(dir, 'docs'));
      fs.mkdirSync(path.join(dir, 'notebooks'));
      fs.mkdirSync(path.join(dir, 'lib'));
      fs.writeFileSync(path.join(dir, 'notebooks', '01_a.ipynb'), '{"cells": []}');
      fs.writeFileSync(path.join(dir, 'lib', 'a.ts'), '');
      fs.writeFileSync(path.join(dir, 'docs', 'target.md'), '<a id="kept"></a>\n## The `closed` form (again)\n');
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('an import into lib/ past the entry is found in each form (static, type-only, export from, import(), require(), dist/lib); the entry, own folder and packages are not', () => {
      const text = [
        "import * as fs from 'fs';",
        "import * as tf from '@tensorflow/tfjs';",
        "import { useBestBackend } from '../../index';",
        "import type { Schedule } from '../..';",
        "import { runInProcess } from '../runners/inprocess';",
        "import { check } from '../check';",
        "import { writeFileAtomic } from '../../runtime/files';",
        'import type {',
        '  TrainProgress,',
        "} from '../../training/train';",
        "export * from '../../diffusion/schedule';",
        "const image = require('../../data/image');",
        "const unet = () => import('../../models/unet');",
        "import { train } from '../../../dist/lib/training/train';",
        "// import { x } from '../../runtime/progress' (a comment, not an import)",
        "const s = \"from '../../runtime/progress'\";",
      ].join('\n');
      expect(entryViolations('lib/workbook/site/page.ts', text)).to.deep.equal([
        "lib/workbook/site/page.ts: '../../runtime/files'",
        "lib/workbook/site/page.ts: '../../training/train'",
        "lib/workbook/site/page.ts: '../../diffusion/schedule'",
        "lib/workbook/site/page.ts: '../../data/image'",
        "lib/workbook/site/page.ts: '../../models/unet'",
        "lib/workbook/site/page.ts: '../../../dist/lib/training/train'",
      ]);
      const bench = ["import { train } from '../lib';", "import { median } from './core';", "import { GROUP_NORM } from '../lib/runtime/kernels/index';", "import { x } from '../lib/index.ts';", "import { y } from '../dist/lib';"].join('\n');
      expect(entryViolations('bench/profile.ts', bench)).to.deep.equal(["bench/profile.ts: '../lib/runtime/kernels/index'"]);
      // The folder list is a parameter: lib/cli joins it after its own fix.
      expect(entryViolations('lib/cli/common.ts', "import { useBestBackend } from '../runtime/backend';\nimport { Values } from './flags';\nimport { train } from '../index';")).to.deep.equal([
        "lib/cli/common.ts: '../runtime/backend'",
      ]);
    });

    it('clientImportProblems reads the tracked .ts files of exactly the folders it is given', () => {
      const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-clients-'));
      try {
        const put = (rel: string, text: string) => {
          fs.mkdirSync(path.dirname(path.join(repo, rel)), { recursive: true });
          fs.writeFileSync(path.join(repo, rel), text);
        };
        put('lib/index.ts', "export * from './runtime/files';");
        put('lib/runtime/files.ts', 'export const a = 1;');
        put('lib/workbook/a.ts', "import { a } from '../runtime/files';\nimport { b } from '../index';");
        put('lib/cli/c.ts', "import { a } from '../runtime/files';");
        put('bench/b.ts', "import { a } from '../lib';");
        put('bench/node_modules/x/y.ts', "import { a } from '../../../lib/runtime/files';");
        put('lib/workbook/d.d.ts', "import { a } from '../runtime/files';");
        execFileSync('git', ['init', '-q'], { cwd: repo });
        execFileSync('git', ['add', '-A', '-f', '.'], { cwd: repo });
        expect(clientImportProblems(repo, ['lib/workbook', 'bench'])).to.deep.equal({ files: 2, libraryImports: 3, violations: ["lib/workbook/a.ts: '../runtime/files'"] });
        expect(clientImportProblems(repo, ['lib/workbook', 'bench', 'lib/cli']).violations).to.deep.equal(["lib/cli/c.ts: '../runtime/files'", "lib/workbook/a.ts: '../runtime/files'"]);
      } finally {
        fs.rmSync(repo, { recursive: true, force: true });
      }
    });

    it('a library file importing the workbook or the CLI is found; its own imports are not', () => {
      const text = ["import { writeFileAtomic } from '../workbook/report';", "import { x } from '../cli/common';", "import { useBestBackend } from '../runtime/backend';", "import { y } from '../workbook-notes';"].join('\n');
      expect(libraryImportsOfClients('lib/data/judge-train.ts', text)).to.deep.equal(["lib/data/judge-train.ts: '../workbook/report'", "lib/data/judge-train.ts: '../cli/common'"]);
    });

    it('a path outside the repository is found, in each of its three forms', () => {
      const outside = [['shared', 'math.md'].join('/'), ['..', 'shared', 'x'].join('/'), ['', 'work', 'main'].join('/')];
      for (const p of outside) expect(outsideReferences(`ok\nsee ${p} here`), p).to.deep.equal([`line 2: see ${p} here`]);
      expect(outsideReferences('docs/equations.md#posterior and lib/shared.ts')).to.deep.equal([]);
    });

    it('a missing file, a missing anchor and a link out of the repository are reported; good links and code are not', () => {
      const page = path.join(dir, 'docs', 'page.md');
      const md = [
        '[ok](target.md) [ok](target.md#kept) [ok](target.md#the-closed-form-again) [ok](#local) [ok](https://example.org/x.md)',
        '[gone](missing.md) [no anchor](target.md#lost) [out](../../elsewhere.md) [here](#nowhere)',
        '`[code](missing.md)`',
        '```',
        '[fenced](missing.md)',
        '```',
        '<a id="local"></a>',
      ].join('\n');
      expect(brokenLinks(page, dir, md)).to.deep.equal([
        'missing.md: docs/missing.md does not exist',
        'target.md#lost: docs/target.md has no anchor #lost',
        '../../elsewhere.md: leaves the repository',
        '#nowhere: no such anchor in this file',
      ]);
    });

    it('a section without an anchor, a notebook link or a lib/ link is reported', () => {
      const eq = path.join(dir, 'docs', 'equations.md');
      const md = [
        '<a id="good"></a>',
        '## Good',
        '[nb](../notebooks/01_a.ipynb) [lib](../lib/a.ts)',
        '## No anchor',
        '[nb](../notebooks/01_a.ipynb) [lib](../lib/a.ts)',
        '<a id="no-notebook"></a>',
        '## No notebook',
        '[nb](../notebooks/99_missing.ipynb) [lib](../lib/a.ts)',
        '<a id="no-lib"></a>',
        '## No lib',
        '[nb](../notebooks/01_a.ipynb) `[lib](../lib/a.ts)`',
      ].join('\n');
      const got = sections(md).map((s) => [s.heading, s.anchor, sectionProblems(s, eq, dir)]);
      expect(got).to.deep.equal([
        ['Good', 'good', []],
        ['No anchor', undefined, ['no <a id="..."></a> anchor above its heading']],
        ['No notebook', 'no-notebook', ['no link to an existing notebook']],
        ['No lib', 'no-lib', ['no link to an existing lib/ file']],
      ]);
    });
  });
});
