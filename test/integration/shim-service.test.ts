// The per-sandbox service as containerd's shim drives it, on a real VM: the bundle's rootfs comes as an
// overlay mount (as the overlayfs snapshotter sends it), and task events go to a fake containerd event
// service on a real socket. Proves the overlay is what the VM's container sees and writes, and that
// TaskCreate, TaskStart, TaskExit, TaskDelete arrive in that order.

import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { makeContext } from "../../src/cli/runtime-context.js";
import { hostService } from "../../src/cli/service-host.js";
import { TaskExitSchema } from "../../src/protocol/gen/containerd/api/events/task_pb.js";
import { Task } from "../../src/protocol/gen/containerd/runtime/v2/task/shim_pb.js";
import { TtrpcConnection, createClient } from "../../src/protocol/ttrpc/client.js";
import { NodeProcessRunner } from "../../src/platform/process.js";
import { createEventPublisher } from "../../src/shim/events.js";
import { makeBusyboxBundle } from "../../src/tools/busybox-bundle.js";
import { FakeEventsServer } from "../helpers/fake-events.js";
import { leftovers, makeRunRoot, removeRunRoot } from "../helpers/cli.js";
import { requires, testImageDir } from "../helpers/requires.js";

describe(
  "the shim's service with containerd's rootfs and events (real VM)",
  {
    skip: requires("root", "qemu", "image"),
    timeout: 240_000,
  },
  () => {
    let work = "";
    let root = "";
    let srv: FakeEventsServer;

    before(async () => {
      process.env["KATA_TS_IMAGE_DIR"] = testImageDir;
      work = await mkdtemp(path.join(tmpdir(), "kata-ts-shim-svc-"));
      root = await makeRunRoot();
      srv = await FakeEventsServer.create();
      await srv.start();
    });
    after(async () => {
      await srv.dispose();
      await removeRunRoot(root);
      if (process.env["KEEP"] === undefined) await rm(work, { recursive: true, force: true });
    });

    it("runs a container on an overlay rootfs, its writes landing in the upper dir, with events in order", async () => {
      const sid = `shim${process.pid}`;
      // The snapshot's lower layer: a busybox root with a file in it; config.json goes to a bundle without rootfs.
      const snap = await makeBusyboxBundle(
        { runner: new NodeProcessRunner() },
        {
          dir: path.join(work, "snap"),
          args: ["sh", "-c", "cat /hello; echo written > /new"],
          // containerd's specs have a writable root: the snapshot's upper layer takes the writes.
          edit: (spec) => {
            spec.root = { path: "rootfs", readonly: false };
          },
        },
      );
      await writeFile(path.join(snap, "rootfs", "hello"), "from the lower layer\n");
      const bundle = path.join(work, "bundle");
      const upper = path.join(work, "upper");
      const wdir = path.join(work, "work");
      for (const d of [bundle, upper, wdir]) await mkdir(d, { recursive: true });
      await copyFile(path.join(snap, "config.json"), path.join(bundle, "config.json"));
      const stdout = path.join(work, "stdout");
      const stderr = path.join(work, "stderr");
      await writeFile(stdout, "");
      await writeFile(stderr, "");

      const ctx = makeContext({ root, logFormat: "json", log: path.join(work, "kata.log") });
      const publisher = createEventPublisher({
        ttrpcAddress: `unix://${srv.socketPath}`,
        namespace: "default",
        logger: ctx.logger,
      });
      const service = await hostService(ctx, sid, { publisher });
      const socket = net.connect(service.socketPath);
      await once(socket, "connect");
      const conn = new TtrpcConnection(socket);
      const task = createClient(Task, conn);
      let waited;
      try {
        await task.create({
          id: sid,
          bundle,
          stdout,
          rootfs: [
            {
              type: "overlay",
              source: "overlay",
              options: ["index=off", `workdir=${wdir}`, `upperdir=${upper}`, `lowerdir=${path.join(snap, "rootfs")}`],
            },
          ],
        });
        await task.start({ id: sid });
        waited = await task.wait({ id: sid });
        await task.delete({ id: sid });
        await task.shutdown({});
      } finally {
        await conn.close();
        await service.close();
        await publisher.close();
      }

      assert.equal(waited.exitStatus, 0, await readFile(stderr, "utf8"));
      assert.equal(await readFile(stdout, "utf8"), "from the lower layer\n");
      assert.equal(await readFile(path.join(upper, "new"), "utf8"), "written\n");
      assert.deepEqual(srv.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
      assert.equal(srv.decode(2, TaskExitSchema).exitStatus, 0);
      const mounts = (await readFile("/proc/self/mounts", "utf8")).split("\n").filter((l) => l.includes(work));
      assert.deepEqual(mounts, []);
      assert.deepEqual(await leftovers(root), []);
    });
  },
);
