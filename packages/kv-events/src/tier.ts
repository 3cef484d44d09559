/**
 * The index tier of a `medium`: lower-cased, with nil meaning GPU (vLLM's GPU prefix cache sends
 * "GPU" or nothing, its offloading connector "CPU", LMCache "cpu").
 */
export function tierOfMedium(medium: string | null | undefined): string {
  return medium === null || medium === undefined || medium === '' ? 'gpu' : medium.toLowerCase();
}
