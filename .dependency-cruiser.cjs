/**
 * Dependency rules, checked by `npm run lint` (docs/architecture.md, "Dependencies").
 *
 * Folders are the units: src/lib, src/db, src/config, src/realtime, src/plugins, each
 * src/modules/<name> (and the shared files directly in src/modules), src/gateway, src/compat.
 * The files at the top of src/ (context.ts, app.ts, server.ts) are the composition root: they
 * connect the modules, and modules may use the root's `AppContext` type.
 */
const ROOT = '^src/[^/]+\\.ts$';

module.exports = {
  forbidden: [
    {
      name: 'no-folder-cycle',
      comment: 'Dependencies point one way: no cycle between the folders of src/ (the composition root aside).',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { pathNot: ROOT } },
    },
    {
      name: 'no-file-cycle',
      comment: 'No runtime import cycle between files (type-only imports of the root AppContext aside).',
      severity: 'error',
      from: { path: '^src/', pathNot: ROOT },
      to: { circular: true, viaOnly: { pathNot: ROOT } },
    },
    {
      name: 'core-not-compat',
      comment: "The original app's contract (src/compat) uses the core; the core never imports it.",
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/compat/', '^src/app\\.ts$', '^src/cli/'] },
      to: { path: '^src/compat/' },
    },
    {
      name: 'modules-not-doors',
      comment: 'Modules and the layers below them never import the doors above them or the composition root at run time.',
      severity: 'error',
      from: { path: '^src/(modules|realtime|plugins|lib|db|config)/' },
      to: { path: ['^src/(gateway|compat|cli)/', '^src/(app|server)\\.ts$'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
