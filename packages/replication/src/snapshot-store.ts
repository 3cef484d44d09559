import type { JetStreamClient, ObjectStore } from 'nats';
import { StorageType } from 'nats';
import { decodeSnapshot, encodeSnapshot, type StoredSnapshot } from './snapshot-codec.js';

const OBJECT_NAME = 'latest';

/** The latest index snapshot, in a JetStream object store (chunked, so no payload limit applies). */
export class SnapshotStore {
  private constructor(private readonly os: ObjectStore) {}

  static async open(js: JetStreamClient, bucket: string): Promise<SnapshotStore> {
    return new SnapshotStore(await js.views.os(bucket, { storage: StorageType.File }));
  }

  /** Returns the encoded size. */
  async write(s: StoredSnapshot): Promise<number> {
    const data = encodeSnapshot(s);
    await this.os.putBlob({ name: OBJECT_NAME, description: `kvix index snapshot at stream seq ${s.streamSeq} from ${s.origin}` }, data);
    return data.byteLength;
  }

  async read(): Promise<{ stored: StoredSnapshot; bytes: number } | null> {
    const data = await this.os.getBlob(OBJECT_NAME);
    if (data === null) return null;
    return { stored: decodeSnapshot(data), bytes: data.byteLength };
  }
}
