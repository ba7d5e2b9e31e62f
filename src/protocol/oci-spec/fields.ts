// Field helpers shared by every section of the OCI <-> grpc.Spec mapping: range-checked number conversions
// (host side refuses what the wire type cannot carry, guest side what Number cannot hold) and the readers
// that turn proto3's zero values into absent OCI fields. See convert.ts for the conventions.

import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { Code, KataError } from "../../base/errors.js";

/** The init shape of a generated message, what the host side builds before `create`. */
export type Init<S extends DescMessage> = MessageInitShape<S>;

export function invalid(path: string, what: string): KataError {
  return new KataError(Code.InvalidArgument, `oci spec ${path}: ${what}`, { details: { path } });
}

export function i64(v: number, path: string): bigint {
  if (!Number.isSafeInteger(v)) throw invalid(path, `${v} is not an integer in the safe range ±(2^53-1)`);
  return BigInt(v);
}

export function u64(v: number, path: string): bigint {
  if (v < 0) throw invalid(path, `${v} is negative`);
  return i64(v, path);
}

export function u32(v: number, path: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw invalid(path, `${v} is not a uint32`);
  return v;
}

export function num(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalid(path, `${v} is outside the safe integer range ±(2^53-1)`);
  }
  return Number(v);
}

// Guest-side field readers: proto3's zero/empty value becomes an absent OCI field.
export const nz = (v: bigint, path: string): number | undefined => (v === 0n ? undefined : num(v, path));
export const nz32 = (v: number): number | undefined => (v === 0 ? undefined : v);
export const flag = (v: boolean): true | undefined => (v ? true : undefined);
export const str = (v: string): string | undefined => (v === "" ? undefined : v);
// Arrays and maps are copied both ways, so a converted value never aliases its input.
export const list = <T>(v: readonly T[]): T[] | undefined => (v.length === 0 ? undefined : [...v]);
export const each = <A, B>(v: readonly A[], f: (x: A, i: number) => B): B[] | undefined =>
  v.length === 0 ? undefined : v.map(f);
export const record = (v: Readonly<Record<string, string>>): Record<string, string> | undefined =>
  Object.keys(v).length === 0 ? undefined : { ...v };
export const copy = <T>(v: readonly T[] | undefined): T[] => (v === undefined ? [] : [...v]);

/**
 * Host side: a copy of a string map for the wire. protobuf-es decodes a map field into a plain object,
 * where a "__proto__" key sets the prototype instead of adding an entry, so the guest would silently
 * lose it; refusing it names the problem instead.
 */
export function wireMap(v: Readonly<Record<string, string>> | undefined, path: string): Record<string, string> {
  if (v !== undefined && Object.hasOwn(v, "__proto__")) {
    throw invalid(`${path}.__proto__`, "the key __proto__ cannot cross the wire (the guest decodes maps into objects)");
  }
  return { ...v };
}

/** `prune`, and absent when nothing is left: for the resource groups, where `{}` only adds noise. */
export function group<T extends object>(v: Loose<T>): T | undefined {
  const out = prune<T>(v);
  return Object.keys(out).length === 0 ? undefined : out;
}

type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** T, except that its optional keys may also hold undefined (which `prune` then removes). */
export type Loose<T> = { [K in keyof T]: K extends OptionalKeys<T> ? T[K] | undefined : T[K] };

/** Drops undefined-valued keys: under exactOptionalPropertyTypes an optional field is absent, never undefined. */
export function prune<T extends object>(v: Loose<T>): T {
  // CAST: only keys whose value is undefined were removed, and Loose<T> allows undefined only on T's
  // optional keys, so what remains is a T.
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as T;
}
