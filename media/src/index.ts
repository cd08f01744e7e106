/**
 * `@meridian/media`: the media node around mediasoup. Its door: the node (workers, sessions, legs),
 * the RTP monitor, the error catalog, the controller link, and the `meridian media` command.
 */
export { MediaNode, mediasoupWorkerBin } from './media-node';
export type {
  MediaNodeOptions,
  MediaNodeEvents,
  MediaNodeObserverEvents,
  NodeLoad,
  WorkerLoad,
  WorkerDiedInfo,
  WorkerRestartedInfo,
} from './media-node';
export { SessionLegs } from './session-legs';
export type { IngressSpec, PipeOutInfo, SessionInfo, SessionLegsEvents } from './session-legs';
export { MediaLeg, MEDIA_LEG_KINDS } from './media-leg';
export type { MediaLegKind, Tuple, MediaLegEvents } from './media-leg';
export { RtpMonitor } from './rtp-monitor';
export type { LegHealth, LegState, RtpMonitorOptions, RtpMonitorEvents } from './rtp-monitor';
export { CODEC_NAMES, isCodecName } from './codecs';
export type { CodecName } from './codecs';
export { MediaError, MEDIA_ERROR_CODES, isMediaError, grpcStatusOf, toMediaError } from './errors';
export type { MediaErrorCode } from './errors';

export { ControllerLink } from './controller-link';
export type { ControllerLinkOptions, ControllerLinkEvents } from './controller-link';
export { parseOrder, executeOrder, answerOrder } from './media-orders';
export type { MediaOrder } from './media-orders';
export { loadMediaControl, mediaProtoPath, MEDIA_PROTO_LOADER_OPTIONS } from './media-proto';
export type * from './media-proto';

import { commandMedia } from './command-media';

/** Subcommands of the `meridian` CLI that this package owns (see bin/meridian.js). */
export const commands: Record<string, (argv: string[]) => Promise<number>> = { media: commandMedia };
export { RtpSender, RtpReceiver } from './rtp-stream';
export type { RtpSenderOptions, ReceivedPacket } from './rtp-stream';
