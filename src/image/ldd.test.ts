import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseLdd } from "./ldd.js";

// `ldd /usr/bin/node` on Debian 12.
const nodeLdd = `	linux-vdso.so.1 (0x00007f256dd31000)
	libdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f256dd1a000)
	libstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f256da00000)
	libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f256dc3a000)
	libgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f256dc1a000)
	libpthread.so.0 => /lib/x86_64-linux-gnu/libpthread.so.0 (0x00007f256d9fb000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f256d817000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f256dd33000)
`;

describe("parseLdd", () => {
  it("lists every library path and the dynamic loader, but not the vdso", () => {
    const r = parseLdd(nodeLdd);

    assert.deepEqual(r.paths, [
      "/lib/x86_64-linux-gnu/libdl.so.2",
      "/lib/x86_64-linux-gnu/libstdc++.so.6",
      "/lib/x86_64-linux-gnu/libm.so.6",
      "/lib/x86_64-linux-gnu/libgcc_s.so.1",
      "/lib/x86_64-linux-gnu/libpthread.so.0",
      "/lib/x86_64-linux-gnu/libc.so.6",
      "/lib64/ld-linux-x86-64.so.2",
    ]);
    assert.deepEqual(r.missing, []);
  });

  it("reports libraries that are not found", () => {
    const r = parseLdd(
      "\tlibyajl.so.2 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff64c179000)\n",
    );

    assert.deepEqual(r.missing, ["libyajl.so.2"]);
    assert.deepEqual(r.paths, ["/lib/x86_64-linux-gnu/libc.so.6"]);
  });

  it("lists a library once when ldd prints it twice", () => {
    const line = "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n";

    assert.deepEqual(parseLdd(line + line).paths, ["/lib/x86_64-linux-gnu/libc.so.6"]);
  });
});
