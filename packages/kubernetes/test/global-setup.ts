import { kubeBinDir } from '@kvix/test-support';

export default function setup(): void {
  kubeBinDir();
}
