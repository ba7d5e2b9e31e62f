// Pod network namespaces from the real CNI bridge plugin for integration tests (src/tools/cni-netns.ts does
// the work). Each test network gets its own bridge, subnet and host-local directory, named after a tag and
// this process's pid, so suites running side by side on one host never share addresses.
//
//   const net = testCniNetwork("ping");
//   const pod = await net.addPod("a");          // {nsPath, ip, gateway, mac, result, release()}
//   ... join pod.nsPath (OCI linux.namespaces network path) ...
//   await pod.release();                         // CNI DEL, ip netns delete
//   await net.remove();                          // the bridge and host-local's directory

import { existsSync } from "node:fs";
import { NodeProcessRunner } from "../../src/platform/process.js";
import {
  bridgeConflist,
  createPodNetns,
  defaultCniPath,
  hostLocalDataDir,
  removeBridgeNetwork,
  type CniConflist,
  type PodNetns,
} from "../../src/tools/cni-netns.js";

export type { PodNetns } from "../../src/tools/cni-netns.js";

export interface TestCniNetwork {
  readonly name: string;
  readonly bridge: string;
  readonly subnet: string;
  /** The gateway address the bridge gets (the subnet's first host). */
  readonly gateway: string;
  readonly conflist: CniConflist;
  /** host-local's reservations for this network. */
  readonly dataDir: string;
  addPod(podName: string): Promise<PodNetns>;
  /** Releases pods not yet released, then removes the bridge and host-local's directory. */
  remove(): Promise<void>;
}

/** The CNI plugins the helper runs are installed (Debian's containernetworking-plugins). */
export function cniPluginsInstalled(cniPath: string = defaultCniPath): boolean {
  return ["bridge", "host-local", "loopback"].every((p) => existsSync(`${cniPath}/${p}`));
}

let seq = 0;

/** A fresh bridge network for this process: 10.<200+n>.<pid % 256>.0/24 on bridge `kb<pid><n>`. */
export function testCniNetwork(tag: string, opts: { mtu?: number } = {}): TestCniNetwork {
  const n = seq++;
  // Bridge names must fit IFNAMSIZ (15); the tag goes only into the network's and namespaces' names.
  const bridge = `kb${process.pid}x${n}`.slice(0, 15);
  const third = process.pid % 256;
  const subnet = `10.${200 + (n % 50)}.${third}.0/24`;
  const gateway = `10.${200 + (n % 50)}.${third}.1`;
  const name = `kata-ts-test-${tag}-${process.pid}-${n}`;
  const conflist = bridgeConflist({ name, bridge, subnet, ...(opts.mtu === undefined ? {} : { mtu: opts.mtu }) });
  const runner = new NodeProcessRunner();
  const pods = new Set<PodNetns>();
  return {
    name,
    bridge,
    subnet,
    gateway,
    conflist,
    dataDir: `${hostLocalDataDir}/${name}`,
    async addPod(podName: string): Promise<PodNetns> {
      const pod = await createPodNetns({ runner }, { network: conflist, name: `kts-${process.pid}-${n}-${podName}` });
      pods.add(pod);
      return {
        ...pod,
        release: async () => {
          pods.delete(pod);
          await pod.release();
        },
      };
    },
    async remove(): Promise<void> {
      for (const pod of [...pods]) {
        pods.delete(pod);
        await pod.release();
      }
      await removeBridgeNetwork({ runner }, { name, bridge });
    },
  };
}
