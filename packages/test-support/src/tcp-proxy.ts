import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

/**
 * A TCP relay a test can cut: `sever()` drops every connection and refuses new ones until
 * `restore()`, so a client sees a network partition from its server (a watch that falls behind).
 * Bytes are relayed untouched (TLS passes through).
 */
export interface TcpProxy {
  readonly port: number;
  sever(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const port = await freePort();
  const open = new Set<Socket>();
  let severed = false;
  const server: Server = createServer((client) => {
    if (severed) return void client.destroy();
    const upstream = connect({ port: targetPort, host: targetHost });
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port,
    sever() {
      severed = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      severed = false;
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
