/**
 * Decoded segmentation samples kept on disk and read back as they are used: fine-tuning on more
 * labelled images than memory holds. One file of fixed-size records (the image, then each
 * structure's mask, float32 at the training size), written as the images are decoded and read
 * synchronously when a sample's image or masks are asked for: a training step draws a batch of
 * records (a few megabytes) against a second or more of computing. close() removes the file.
 */
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';

/** A sample whose pixels are read from the store each time they are asked for. */
export interface StoredSample {
  readonly file: string;
  readonly image: Float32Array;
  readonly masks: Float32Array[];
}

export class SampleStore {
  private readonly fd: number;
  private records = 0;
  /** Bytes of one sample: the image and its masks, float32. */
  readonly recordBytes: number;

  /** A new, empty store at `file` (replaced if it exists) for images of `pixels` values and `structures` masks. */
  constructor(
    readonly file: string,
    private readonly pixels: number,
    private readonly structures: number,
  ) {
    this.fd = openSync(file, 'w+');
    this.recordBytes = pixels * 4 * (1 + structures);
  }

  /** Write a sample at the end; returns it as read from here (its arrays may then be dropped). */
  put(sample: { file: string; image: Float32Array; masks: Float32Array[] }): StoredSample {
    if (sample.image.length !== this.pixels || sample.masks.length !== this.structures) throw new Error(`a sample of ${sample.image.length} pixels and ${sample.masks.length} masks in a store of ${this.pixels} and ${this.structures}`);
    const at = this.records++ * this.recordBytes;
    [sample.image, ...sample.masks].forEach((a, k) => this.write(a, at + k * this.pixels * 4));
    const read = (k: number): Float32Array => this.read(at + k * this.pixels * 4);
    const structures = this.structures;
    return {
      file: sample.file,
      get image() {
        return read(0);
      },
      get masks() {
        return Array.from({ length: structures }, (_, k) => read(k + 1));
      },
    };
  }

  private write(values: Float32Array, position: number): void {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd, bytes, done, bytes.length - done, position + done);
  }

  private read(position: number): Float32Array {
    const out = new Float32Array(this.pixels);
    const bytes = new Uint8Array(out.buffer);
    for (let done = 0; done < bytes.length; ) {
      const n = readSync(this.fd, bytes, done, bytes.length - done, position + done);
      if (n === 0) throw new Error(`${this.file}: ends before a sample's pixels (the store was changed or cut)`);
      done += n;
    }
    return out;
  }

  /** Close and remove the file. */
  close(): void {
    closeSync(this.fd);
    rmSync(this.file, { force: true });
  }
}
