import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { checkPortsFree, describePortHolder, PortConflictError, PortInUseError, usageMessage } from '../src/index.js';

const held: Server[] = [];
async function hold(host = '127.0.0.1'): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, host, resolve));
  held.push(srv);
  return (srv.address() as { port: number }).port;
}

afterEach(async () => {
  await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('checking ports before starting', () => {
  it('names the port, the listener, the flag that moves it and the process holding it', async () => {
    const port = await hold();
    const err = await checkPortsFree([{ name: 'gateway', flag: '--gateway-port', host: '127.0.0.1', port }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortInUseError);
    expect((err as PortInUseError).code).toBe('PORT_IN_USE');
    expect((err as Error).message).toMatch(new RegExp(`^port ${port} \\(gateway, --gateway-port\\) is in use by pid ${process.pid} \\(.+\\); stop that or pass --gateway-port <another port>$`));
    // What a service prints before exiting 2: the same one line.
    expect(usageMessage(err)).toBe((err as Error).message);
  });

  it('sees a port held on every interface from a loopback listener too', async () => {
    const port = await hold('0.0.0.0');
    await expect(checkPortsFree([{ name: 'metrics', flag: '--metrics-port', host: '127.0.0.1', port }])).rejects.toBeInstanceOf(PortInUseError);
  });

  it('passes free ports and port 0, and refuses two listeners on one port', async () => {
    const port = await hold();
    await new Promise((r) => held.pop()!.close(r));
    await expect(checkPortsFree([{ name: 'a', flag: '--a-port', host: '127.0.0.1', port }, { name: 'b', flag: '--b-port', host: '127.0.0.1', port: 0 }])).resolves.toBeUndefined();
    await expect(checkPortsFree([{ name: 'a', flag: '--a-port', host: '127.0.0.1', port }, { name: 'b', flag: '--b-port', host: '127.0.0.1', port }])).rejects.toThrow(PortConflictError);
  });

  it('uses the listener\'s own hint when it has a better suggestion', async () => {
    const port = await hold();
    await expect(checkPortsFree([{ name: 'NATS', flag: '--nats-url', host: '127.0.0.1', port, hint: 'pass --nats-url to use it' }])).rejects.toThrow(/; pass --nats-url to use it$/);
  });

  it('tells nothing rather than guessing when no process listens', () => {
    expect(describePortHolder(1)).toBeNull();
  });

  it('turns an EADDRINUSE met later, even wrapped, into one line', () => {
    const inner = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:9090'), { code: 'EADDRINUSE', address: '127.0.0.1', port: 9090 });
    const wrapped = new Error('cannot listen for metrics on 127.0.0.1:9090: listen EADDRINUSE', { cause: inner });
    expect(usageMessage(wrapped)).toMatch(/^address in use: 127\.0\.0\.1:9090 /);
    expect(usageMessage(new Error('other'))).toBeNull();
  });
});
