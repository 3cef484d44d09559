import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

/** A span as the receiver decoded it: ids in hex, attributes as plain values. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, unknown>;
  statusCode: number;
}

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: { toString(): string } | number;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  bytesValue?: Uint8Array;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}

function valueOf(v: AnyValue | undefined): unknown {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue.toString());
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(valueOf);
  if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue).toString('hex');
  return null;
}

const attrs = (list: KeyValue[] | undefined): Record<string, unknown> => Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
const hex = (b: Uint8Array | undefined): string => (b && b.length > 0 ? Buffer.from(b).toString('hex') : '');

/**
 * A real OTLP/HTTP trace receiver: POST /v1/traces with an application/x-protobuf
 * ExportTraceServiceRequest (gzip or not), decoded with protobufjs from OTLP's message definitions.
 */
export class OtlpReceiver {
  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly spans: ReceivedSpan[],
  ) {}

  static async start(): Promise<OtlpReceiver> {
    const root = await protobuf.load(fileURLToPath(new URL('./otlp-trace.proto', import.meta.url)));
    const Request = root.lookupType('kvix.test.otlp.ExportTraceServiceRequest');
    const spans: ReceivedSpan[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).includes('application/x-protobuf')) {
          res.writeHead(415).end();
          return;
        }
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const message = Request.toObject(Request.decode(body), { longs: String, defaults: false }) as {
          resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: { traceId?: Uint8Array; spanId?: Uint8Array; parentSpanId?: Uint8Array; name: string; kind?: number; startTimeUnixNano?: string; endTimeUnixNano?: string; attributes?: KeyValue[]; status?: { code?: number } }[] }[] }[];
        };
        for (const rs of message.resourceSpans ?? []) {
          const service = String(attrs(rs.resource?.attributes)['service.name'] ?? '');
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                service,
                traceId: hex(s.traceId),
                spanId: hex(s.spanId),
                parentSpanId: hex(s.parentSpanId),
                name: s.name,
                kind: s.kind ?? 0,
                startNs: BigInt(s.startTimeUnixNano ?? '0'),
                endNs: BigInt(s.endTimeUnixNano ?? '0'),
                attributes: attrs(s.attributes),
                statusCode: s.status?.code ?? 0,
              });
            }
          }
        }
        // An empty ExportTraceServiceResponse: full success.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address() as { port: number };
    return new OtlpReceiver(server, `http://127.0.0.1:${addr.port}`, spans);
  }

  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
