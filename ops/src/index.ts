export * from './errors';
export * from './free-port';
export * from './service-process';
export * from './service-redis';
export * from './service-influx';
export * from './service-snmpd';
export * from './lab';
export * from './data-plane-scheduling';
export * from './lab-plan';
export * from './link-emulator';
export * from './lab-command';
export * from './lab-services';
export * from './meridian-process';
export * from './command-start';
import { labCommand } from './lab-command';
import { startCommand } from './command-start';

/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = {
  lab: labCommand,
  start: startCommand,
};
