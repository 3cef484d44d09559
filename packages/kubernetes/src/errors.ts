export type KubernetesErrorCode = 'KUBECONFIG' | 'CRD_NOT_INSTALLED' | 'FORBIDDEN' | 'UNAUTHORIZED' | 'UNREACHABLE' | 'INVALID_OBJECT';

/** A Kubernetes problem a caller can act on: the code says which, the message what to do. */
export class KubernetesError extends Error {
  constructor(
    readonly code: KubernetesErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KubernetesError';
  }
}

/** The HTTP status of a failed API call, from either of client-node's error shapes (ApiException, watch errors). */
export function statusOf(err: unknown): number | null {
  if (typeof err !== 'object' || err === null) return null;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.code === 'number') return e.code;
  return null;
}

/** One line for logs: the status and the API server's own message when it sent one. */
export function describeApiError(err: unknown): string {
  const status = statusOf(err);
  const body = (err as { body?: unknown } | null)?.body;
  let detail = err instanceof Error ? err.message : String(err);
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === 'string') detail = parsed.message;
    } catch {
      // not JSON: keep the error's own message
    }
  } else if (typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string') {
    detail = (body as { message: string }).message;
  }
  // ApiException messages repeat the whole response; the first line is enough.
  detail = detail.split('\n')[0]!.slice(0, 300);
  return status === null ? detail : `HTTP ${status}: ${detail}`;
}
