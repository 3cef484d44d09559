import type { KubeApiServer } from '@kvix/test-support';

/** The InferencePool of the Kubernetes tests (docs/kubernetes.md, step 2): pods labelled app=vllm on one target port. */
export function poolManifest(name: string, targetPort: number): string {
  return `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: { name: ${name} }
spec:
  selector: { matchLabels: { app: vllm } }
  targetPorts: [{ number: ${targetPort} }]
  endpointPickerRef: { name: kvix-epp, port: { number: 9002 }, failureMode: FailClose }
`;
}

/**
 * A model-server pod of the pool. vLLM binds its KV-event socket on every interface, so pods
 * sharing a host need their own ports: the kvix.io/kv-events-port annotation says which.
 */
export function vllmPodManifest(pod: { name: string; eventPort: number; loraAdapters?: string }): string {
  const lora = pod.loraAdapters === undefined ? '' : `, kvix.io/lora-adapters: ${pod.loraAdapters}`;
  return `
apiVersion: v1
kind: Pod
metadata:
  name: ${pod.name}
  labels: { app: vllm }
  annotations: { kvix.io/kv-events-port: "${pod.eventPort}", kvix.io/kv-replay-port: "${pod.eventPort + 1}"${lora} }
spec:
  nodeName: node-1
  containers: [{ name: vllm, image: vllm/vllm-openai:v0.11.0 }]
`;
}

/** What the kubelet reports once the container answers its readiness probe (or stops answering): the test plays the kubelet. */
export function reportPodReady(server: KubeApiServer, namespace: string, pod: { name: string; ip: string }, ready: boolean): Promise<string> {
  const status = { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] };
  return server.kubectl(['-n', namespace, 'patch', 'pod', pod.name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
}

/** The sum of a metric's samples in Prometheus text whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}
