import type { ServiceDefinition } from '@grpc/grpc-js';

/** Stands in for a request whose bytes are not a valid message of its type. */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/**
 * grpc-js answers a request it cannot deserialize with INTERNAL, which tells a client it is the
 * server's fault. Deserializing through this wrapper turns such a request into a MalformedRequest
 * the handler answers with INVALID_ARGUMENT instead.
 */
export function withMalformedRequests<D extends ServiceDefinition>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new MalformedRequest((err as Error).message);
        }
      },
    };
  }
  return out as D;
}
