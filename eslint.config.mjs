// The linter: typescript-eslint's recommended rules on lib/, test/, bench/ and examples/,
// with the project's own conventions where they differ (see CONTRIBUTING.md).
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'build-asan/', 'prebuilds/', 'node_modules/', 'scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Unused names are tsc's job (noUnusedLocals, noUnusedParameters); `_`-prefixed ones are meant.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Node's private fields are reached through casts, in lib/node-internals.ts and tests.
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-this-alias': 'off',
    },
  },
  {
    // Plain CommonJS run by Node: the install step, the test runner, the packaged smoke test.
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
)
