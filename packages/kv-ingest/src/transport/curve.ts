/**
 * CURVE for the centralized collector: the bound SUB is a CURVE server, and a ZAP handler (ZeroMQ
 * RFC 27) admits only publishers whose long-term public key is on the allow-list. Without a ZAP
 * handler libzmq admits every client that knows the server's public key, so the handler is what
 * makes the list a list. A refused publisher's handshake fails; nothing it sends is ever read.
 */
import { readFileSync } from 'node:fs';
import { Reply } from 'zeromq';

/** The inproc address libzmq sends ZAP requests to (one handler per ZeroMQ context). */
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const Z85_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** A CURVE key (32 bytes) as Z85 text, the form ZeroMQ's tools and zeromq.js use (40 characters). */
export function z85Encode(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!;
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85_ALPHABET[value % 85]!);
      value = Math.floor(value / 85);
    }
    out += chunk.join('');
  }
  return out;
}

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

export class CurveConfigError extends Error {
  override readonly name = 'CurveConfigError';
  readonly code = 'INVALID_CONFIG';
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CurveConfigError(`cannot read the CURVE ${what} ${path}: ${(err as Error).message}`);
  }
}

/**
 * A secret key file: czmq's certificate format (`secret-key = "…"`, as `zcert` writes it) or the
 * bare 40-character Z85 key on a line of its own.
 */
export function readCurveSecretKey(path: string): string {
  const text = readText(path, 'secret key file');
  const key = /secret-key\s*=\s*"?([^"\s]{40})"?/.exec(text)?.[1] ?? text.split('\n').map((l) => l.trim()).find((l) => Z85_KEY.test(l));
  if (key === undefined || !Z85_KEY.test(key)) throw new CurveConfigError(`${path} holds no Z85 CURVE secret key (40 characters, or secret-key = "…")`);
  return key;
}

/**
 * The allow-list: one Z85 public key per line, or czmq certificates' `public-key = "…"` lines. A `#`
 * starts a comment at the start of a line or after a blank only: `#` is a Z85 digit, so a key may hold one.
 */
export function readCurveAllowList(path: string): Set<string> {
  const keys = new Set<string>();
  for (const raw of readText(path, 'allowed keys file').split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    const key = /public-key\s*=\s*"?([^"\s]{40})"?/.exec(line)?.[1] ?? line;
    if (!Z85_KEY.test(key)) throw new CurveConfigError(`${path}: ${JSON.stringify(line)} is not a Z85 CURVE public key (40 characters)`);
    keys.add(key);
  }
  if (keys.size === 0) throw new CurveConfigError(`${path} lists no publisher key: nothing could publish`);
  return keys;
}

export interface ZapDomain {
  allowed: ReadonlySet<string>;
  /** A publisher not on the list tried to connect (its public key, its address). */
  refused(publicKey: string, address: string): void;
}

/**
 * The process's ZAP handler: one REP socket on the ZAP endpoint answering for every domain
 * registered (each CURVE collector gets its own). Started on first use, kept for the process.
 */
class ZapHandler {
  private readonly domains = new Map<string, ZapDomain>();
  private socket: Reply | null = null;
  private starting: Promise<void> | null = null;

  async register(domain: string, policy: ZapDomain): Promise<void> {
    this.domains.set(domain, policy);
    this.starting ??= this.start();
    await this.starting;
  }

  unregister(domain: string): void {
    this.domains.delete(domain);
  }

  private async start(): Promise<void> {
    const socket = new Reply({ linger: 0 });
    await socket.bind(ZAP_ENDPOINT);
    this.socket = socket;
    void this.serve(socket);
  }

  private async serve(socket: Reply): Promise<void> {
    for await (const frames of socket) {
      // [version, request id, domain, address, identity, mechanism, credentials…]
      const [version, requestId, domain, address, , mechanism, key] = frames;
      let status = '400';
      let text = 'refused';
      const policy = this.domains.get(domain?.toString() ?? '');
      if (mechanism?.toString() === 'CURVE' && key?.length === 32 && policy !== undefined) {
        const publicKey = z85Encode(key);
        if (policy.allowed.has(publicKey)) {
          status = '200';
          text = 'OK';
        } else policy.refused(publicKey, address?.toString() ?? '');
      }
      // [version, request id, status code, status text, user id, metadata]
      await socket.send([version ?? '1.0', requestId ?? '', status, text, '', '']);
    }
  }
}

const handler = new ZapHandler();

/** Admits only `policy.allowed` on sockets whose zapDomain is `domain`. */
export function authorizeCurveDomain(domain: string, policy: ZapDomain): Promise<void> {
  return handler.register(domain, policy);
}

export function forgetCurveDomain(domain: string): void {
  handler.unregister(domain);
}
