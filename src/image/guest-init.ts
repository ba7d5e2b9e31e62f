// The guest's /init and /etc/inittab, written into the initrd by the image builder.
// Placeholder until the guest boot path is written (owned by the sandbox/guest work).

export const guestInitScript = "#!/bin/sh\nexec /bin/sh\n";
export const guestInittab = "::sysinit:/bin/true\n";
