import { status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { MalformedRequest } from '@kvix/proto';

export { MalformedRequest, withMalformedRequests } from '@kvix/proto';

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
