import { status, type ServerUnaryCall, type sendUnaryData, type ServiceDefinition } from '@grpc/grpc-js';

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

/** Handles a unary call whose request may be malformed; `handle` throws to fail the call. */
export function unary<Req, Res>(
  handle: (request: Req, call: ServerUnaryCall<Req | MalformedRequest, Res>) => Promise<Res>,
  fail: (err: unknown, call: ServerUnaryCall<Req | MalformedRequest, Res>) => { code: status; details: string },
): (call: ServerUnaryCall<Req | MalformedRequest, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const request = call.request;
    if (request instanceof MalformedRequest) {
      callback({ code: status.INVALID_ARGUMENT, details: `malformed request message: ${request.reason}` });
      return;
    }
    handle(request, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(fail(err, call)),
    );
  };
}
