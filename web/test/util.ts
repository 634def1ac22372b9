// Shared by the tests: the repository's data files, read with 64-bit integers intact.
import { readFileSync } from "node:fs";

/** A file under the repository root. */
export function repoFile(path: string): string {
  return readFileSync(new URL(`../../../${path}`, import.meta.url), "utf8");
}

/** JSON whose integers of 16 digits or more are kept as strings (wrap them in BigInt). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function readJson(path: string): any {
  return JSON.parse(repoFile(path).replace(/(:\s*|\[\s*|,\s*)(\d{16,})(?=\s*[,}\]])/g, '$1"$2"'));
}

export function big(value: number | string): bigint {
  return BigInt(value);
}
