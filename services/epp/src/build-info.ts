import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * What `llm_d_epp_info{commit,build_ref}` reports: KVIX_BUILD_COMMIT / KVIX_BUILD_REF when the
 * image build sets them, else the checkout's git commit when there is one, else "unknown"; the
 * ref defaults to the package version.
 */
function readBuild(): { commit: string; ref: string } {
  const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  let commit = process.env['KVIX_BUILD_COMMIT'] ?? '';
  if (commit === '') {
    try {
      commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: fileURLToPath(new URL('.', import.meta.url)), stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 }).toString().trim();
    } catch {
      commit = 'unknown';
    }
  }
  return { commit: commit || 'unknown', ref: process.env['KVIX_BUILD_REF'] || `v${version}` };
}

export const BUILD = readBuild();
