import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface StageInstructions {
  stage: string;
  /** Instructions executed per request (callgrind's Ir over the stage's loop / requests). */
  perRequest: number;
}

/**
 * Instruction counts of the precise decision's stages (stage-counter.ts under callgrind): a
 * profile that repeats on a loaded machine, where CPU times swing with the neighbours' cache and
 * memory traffic. Instrumentation is on only while a stage runs, switched by callgrind_control,
 * so loading the tokenizer and warming the caches cost no instrumented time.
 */
export async function countStageInstructions(options: { warm?: number; measured?: number; log?: (line: string) => void } = {}): Promise<StageInstructions[]> {
  const warm = options.warm ?? 1500;
  const measured = options.measured ?? 200;
  const dir = mkdtempSync(join(tmpdir(), 'kvix-callgrind-'));
  const script = fileURLToPath(new URL('./stage-counter.js', import.meta.url));
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${join(dir, 'cg.out')}`, process.execPath, script, String(warm), String(measured)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pid = String(child.pid);
  const control = (...args: string[]): Promise<unknown> => run('callgrind_control', [...args, pid]);
  const stages: string[] = [];
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      if (line.startsWith('STAGE ')) {
        const name = line.slice(6);
        options.log?.(`  counting instructions: ${name}`);
        await control('-z');
        await control('-i', 'on');
        child.stdin.write('\n');
      } else if (line.startsWith('DONE ')) {
        await control('-i', 'off');
        await control('-d', `stage-${stages.length}`);
        stages.push(line.slice(5));
        child.stdin.write('\n');
      } else if (line === 'END') {
        break;
      }
    }
    const code = await exited;
    if (code !== 0) throw new Error(`the stage counter under valgrind exited with ${String(code)}: ${stderr.split('\n').slice(-8).join('\n')}`);
    // One dump per stage, in order (cg.out.1, cg.out.2, …); each holds the stage alone.
    const dumps = readdirSync(dir)
      .filter((f) => /^cg\.out\.\d+$/.test(f))
      .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
    if (dumps.length < stages.length) throw new Error(`callgrind wrote ${dumps.length} dumps for ${stages.length} stages`);
    return stages.map((stage, i) => {
      const text = readFileSync(join(dir, dumps[i]!), 'utf8');
      const total = /^totals:\s*(\d+)/m.exec(text);
      return { stage, perRequest: total ? Number(total[1]) / measured : Number.NaN };
    });
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (!process.env["KVIX_KEEP_CALLGRIND"]) rmSync(dir, { recursive: true, force: true });
    else options.log?.(`callgrind dumps kept in ${dir}`);
  }
}
