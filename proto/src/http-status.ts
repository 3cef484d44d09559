import { fileURLToPath } from 'node:url';
import { loadSync, type EnumTypeDefinition } from '@grpc/proto-loader';
import type { StatusCode__Output } from './generated/envoy/type/v3/StatusCode.js';

const HTTP_STATUS_PROTO = 'envoy/type/v3/http_status.proto';

let numbers: Map<string, number> | undefined;

// The loader decodes `envoy.type.v3.StatusCode` by name ("ServiceUnavailable"); the numbers come
// from the .proto itself so the table can never drift from it.
function statusNumbers(): Map<string, number> {
  if (numbers === undefined) {
    const definition = loadSync(HTTP_STATUS_PROTO, { includeDirs: [fileURLToPath(new URL('..', import.meta.url))] });
    const statusCode = definition['envoy.type.v3.StatusCode'] as EnumTypeDefinition;
    const values = (statusCode.type as { value: { name: string; number: number }[] }).value;
    numbers = new Map(values.map((v) => [v.name, v.number]));
  }
  return numbers;
}

/**
 * The HTTP status an `envoy.type.v3.HttpStatus.code` stands for: 503 for "ServiceUnavailable".
 * A number passes through (proto3 enums are open: a status Envoy's enum does not list, e.g. 418,
 * decodes as its number). An unknown name gives 0.
 */
export function httpStatusNumber(code: StatusCode__Output | number | string): number {
  if (typeof code === 'number') return code;
  return statusNumbers().get(code) ?? 0;
}
