// Where the build puts the guest agent and its bundles, relative to the package root. Apart from
// bundle-agent.ts so that the runtime (`kata-ts image build`, the host's startup snapshot) can know
// them without loading esbuild, a build-time dependency.

/** Agent entry and bundle. */
export const agentEntryRelPath = "dist/src/cli/agent-main.js";
export const agentBundleRelPath = "dist/agent/kata-ts-agent.mjs";
/** The CommonJS bundle, next to the ESM one. */
export const agentSnapshotEntryRelPath = "dist/agent/kata-ts-agent.cjs";
