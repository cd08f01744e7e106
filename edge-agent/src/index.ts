export * from './policy';
export * from './driver';
export * from './driver-linux';
/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {};
