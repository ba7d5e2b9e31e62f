// The sockets QEMU gets in a VM's directory. Their names bound a sandbox id's length (sun_path), which
// is checked before anything starts, also by entry points that load nothing of QEMU's driver.

export const qemuSocketNames = { qmp: "qmp.sock", agent: "agent.sock", console: "console.sock" } as const;
