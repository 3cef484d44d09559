import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKubeAccess } from '../src/kubeconfig.js';
import { kubernetesEnabled, KubernetesSettingsSchema, parsePoolRef, targetPortsFromStrings } from '../src/settings.js';

describe('Kubernetes settings', () => {
  it('takes a pool as namespace/name or name, and rejects what Kubernetes would not name so', () => {
    expect(parsePoolRef('llm/pool-a')).toEqual({ namespace: 'llm', name: 'pool-a' });
    expect(parsePoolRef('pool-a')).toEqual({ namespace: undefined, name: 'pool-a' });
    expect(KubernetesSettingsSchema.safeParse({ inferencePool: 'Llm/Pool' }).success).toBe(false);
    expect(KubernetesSettingsSchema.safeParse({ inferencePool: 'a/b/c' }).success).toBe(false);
  });

  it('is off unless a pool or a selector is given, and refuses both at once', () => {
    expect(kubernetesEnabled(KubernetesSettingsSchema.parse({}))).toBe(false);
    expect(kubernetesEnabled(KubernetesSettingsSchema.parse({ podSelector: 'app=vllm' }))).toBe(true);
    const both = KubernetesSettingsSchema.safeParse({ inferencePool: 'p', podSelector: 'app=vllm' });
    expect(both.success).toBe(false);
    expect(both.error?.issues[0]?.message).toMatch(/not both/);
  });

  it('reads --target-port values as numbers and names a bad one', () => {
    const layer: Record<string, unknown> = { kubernetes: { targetPorts: ['8000', '8001'] } };
    targetPortsFromStrings(layer);
    expect(layer).toEqual({ kubernetes: { targetPorts: [8000, 8001] } });
    expect(() => targetPortsFromStrings({ kubernetes: { targetPorts: ['http'] } })).toThrow(/target port "http"/);
  });

  it('takes the namespace from POD_NAMESPACE, else the kubeconfig context, and fails clearly without a cluster', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvix-kubeconfig-'));
    const file = join(dir, 'config');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: team-a}}]\ncurrent-context: x\n');
    expect(loadKubeAccess({ kubeconfig: file }, {}).namespace).toBe('team-a');
    expect(loadKubeAccess({ kubeconfig: file }, { POD_NAMESPACE: 'from-downward-api' }).namespace).toBe('from-downward-api');
    expect(loadKubeAccess({ kubeconfig: file, namespace: 'explicit' }, { POD_NAMESPACE: 'x' }).namespace).toBe('explicit');
    expect(() => loadKubeAccess({ kubeconfig: join(dir, 'missing') }, {})).toThrow(expect.objectContaining({ code: 'KUBECONFIG' }));
  });
});
