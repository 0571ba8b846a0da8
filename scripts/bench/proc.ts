/** Running and timing child processes for the bench, and the small statistics it reports. */
import { spawn } from 'node:child_process';
import { baseEnv } from '../../test/helpers/run';

export interface Timed {
  code: number | null;
  seconds: number;
  output: string;
}

/** Runs one command with exactly `env` (on top of a minimal base) and times it, wall clock. */
export function timed(cmd: string, args: string[], env: Record<string, string>, cwd?: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: { ...baseEnv(), ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, seconds: Number(process.hrtime.bigint() - started) / 1e9, output: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

/** timed(), but throws with the command's output unless it exits 0. */
export async function ok(cmd: string, args: string[], env: Record<string, string>, cwd?: string): Promise<Timed> {
  const r = await timed(cmd, args, env, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.output.slice(-3000)}`);
  return r;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) throw new Error('percentile of nothing');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const out = (s: string) => process.stdout.write(s);
