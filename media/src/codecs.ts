/**
 * The audio codecs a media node accepts on an ingress leg, and the mediasoup shapes derived from
 * them. One table, so the router's capabilities and the ingress producer never disagree.
 */
import type { types as ms } from 'mediasoup';

/** Codec names as they appear in orders and in the sessions API (`"codec": "opus"`). */
export const CODEC_NAMES = ['opus', 'pcmu', 'pcma'] as const;
export type CodecName = (typeof CODEC_NAMES)[number];

interface CodecSpec {
  mimeType: string;
  clockRate: number;
  channels?: number;
}

const CODECS: Record<CodecName, CodecSpec> = {
  opus: { mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  pcmu: { mimeType: 'audio/PCMU', clockRate: 8000 },
  pcma: { mimeType: 'audio/PCMA', clockRate: 8000 },
};

export function isCodecName(value: string): value is CodecName {
  return (CODEC_NAMES as readonly string[]).includes(value);
}

/**
 * Media codecs of a session's router. Without a codec: all the codecs an ingress leg may carry,
 * payload types chosen by mediasoup. With the session's codec and payload type: that codec alone,
 * with that payload type as `preferredPayloadType`. A consumer sends the payload type of its
 * router's codec (mediasoup copies the router's mapped codec into the consumer's RTP parameters),
 * so this is what makes the egress keep the source's payload type.
 */
export function routerMediaCodecs(session?: {
  codec: CodecName;
  payloadType: number;
}): ms.RtpCodecCapability[] {
  if (session !== undefined) {
    const c = CODECS[session.codec];
    const base = { kind: 'audio' as const, mimeType: c.mimeType, clockRate: c.clockRate };
    return [
      c.channels === undefined
        ? { ...base, preferredPayloadType: session.payloadType }
        : { ...base, channels: c.channels, preferredPayloadType: session.payloadType },
    ];
  }
  return CODEC_NAMES.map((name) => {
    const c = CODECS[name];
    return c.channels === undefined
      ? { kind: 'audio', mimeType: c.mimeType, clockRate: c.clockRate }
      : { kind: 'audio', mimeType: c.mimeType, clockRate: c.clockRate, channels: c.channels };
  });
}

/** RTP parameters of an ingress producer: what the RTP source sends (payload type and SSRC). */
export function ingressRtpParameters(codec: CodecName, payloadType: number, ssrc: number): ms.RtpParameters {
  const c = CODECS[codec];
  const rtcpFeedback: ms.RtcpFeedback[] = [];
  return {
    codecs: [
      c.channels === undefined
        ? { mimeType: c.mimeType, clockRate: c.clockRate, payloadType, rtcpFeedback }
        : { mimeType: c.mimeType, clockRate: c.clockRate, channels: c.channels, payloadType, rtcpFeedback },
    ],
    encodings: [{ ssrc }],
  };
}
