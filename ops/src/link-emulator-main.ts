/**
 * Entry point of the lab's link emulator process: `node link-emulator-main.js CONFIG.json`.
 * Started detached by `meridian lab up`, stopped by `lab down` (SIGTERM).
 */
import { readFileSync } from 'node:fs';
import { LinkEmulator, type EmulatorConfig } from './link-emulator';

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: link-emulator-main CONFIG.json\n');
    process.exitCode = 2;
    return;
  }
  const config = JSON.parse(readFileSync(file, 'utf8')) as EmulatorConfig;
  const emulator = new LinkEmulator(config);
  await emulator.start();
  process.stdout.write('ready\n');
  const stop = (): void => {
    void emulator.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`link emulator: ${String(err)}\n`);
  process.exit(1);
});
