export * from './types';
/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {};
